"""Shared-representation knowledge: relations between two feature maps of
the same network (TF1 `nets/Shared.py`).

The feature lists are the NHWC outputs of consecutive stages (`feat0`,
`feat1`, ... of `nets.ResNet`), student and teacher with the same shapes.
"""

import tensorflow as tf

from tf_kd import svd as svd_ops


def gram(top, bottom):
    """TF1 `Grammian`: the FSP matrix `top^T bottom / HW`, `[B, C_top,
    C_bottom]`, of two consecutive feature maps, the larger `top` being
    max-pooled 2x2 (stride 2, VALID) to the size of `bottom` first."""
    if top.shape[1] > bottom.shape[1]:
        top = tf.nn.max_pool2d(top, ksize=2, strides=2, padding="VALID")
    hw = bottom.shape[1] * bottom.shape[2]
    top = tf.reshape(top, [-1, hw, top.shape[-1]])
    bottom = tf.reshape(bottom, [-1, hw, bottom.shape[-1]])
    return tf.matmul(top, bottom, transpose_a=True) / hw


def fsp(student_feats, teacher_feats, weight=1e-3):
    """FSP (Yim et al., "A gift from knowledge distillation: fast
    optimization, network minimization and transfer learning", CVPR 2017),
    TF1 `Shared.FSP`.

    For each pair of consecutive stages, half the squared Frobenius distance
    between the student's and the (gradient-stopped) teacher's FSP matrices,
    averaged over the batch; summed over pairs, times `weight`.
    """
    losses = []
    for i in range(len(student_feats) - 1):
        g_s = gram(student_feats[i], student_feats[i + 1])
        g_t = tf.stop_gradient(gram(teacher_feats[i], teacher_feats[i + 1]))
        losses.append(tf.reduce_mean(tf.reduce_sum(tf.square(g_t - g_s), [1, 2]) / 2))
    return tf.add_n(losses) * weight


def rbf_graph(v, v_prev):
    """`exp(-(v[b, i, k] - v_prev[b, j, k])^2 / 8)`: the RBF kernel between
    every entry of the singular vectors of a stage `[B, D, k]` and of the
    previous stage `[B, D_prev, k]`, `[B, D, D_prev, k]`."""
    return tf.exp(-tf.square(v[:, :, None] - v_prev[:, None]) / 8)


def kd_svd(student_feats, teacher_feats, dist_type="SVD", num_teacher=1):
    """KD-SVD (Lee et al., "Self-supervised knowledge distillation using
    singular value decomposition", ECCV 2018), TF1 `Shared.KD_SVD`.

    Per stage: the teacher's `num_teacher` (TF1: `K = 1`) leading right
    singular vectors, the student's `num_teacher + 3`, from which `align_rsv`
    picks the one closest to each teacher vector with the teacher's sign;
    both scaled by the teacher's l2-normalised singular values (for `K = 1`
    that is 1). Between consecutive stages, the summed squared difference of
    the student's and the gradient-stopped teacher's `rbf_graph`
    (non-finite terms dropped), summed over pairs.

    `dist_type`: "SVD" decomposes with `svd_ops.svd`, "EID" with
    `svd_ops.svd_eid` (TF1 KD-SVD / KD-EID).
    """
    decompose = {"SVD": svd_ops.svd, "EID": svd_ops.svd_eid}[dist_type]
    losses = []
    previous = None
    for sfm, tfm in zip(student_feats, teacher_feats):
        sigma_t, _, v_t = decompose(tfm, num_teacher)
        _, _, v_s = decompose(sfm, num_teacher + 3)
        v_s, v_t = svd_ops.align_rsv(v_s, v_t)
        sigma_t = sigma_t[:, None]              # [B, 1, K], over the D entries
        v_s, v_t = v_s * sigma_t, v_t * sigma_t
        if previous is not None:
            v_s_prev, v_t_prev = previous
            t_rbf = tf.stop_gradient(rbf_graph(v_t, v_t_prev))
            difference = tf.square(rbf_graph(v_s, v_s_prev) - t_rbf)
            losses.append(tf.reduce_sum(svd_ops.removenan(difference)))
        previous = v_s, v_t
    return tf.add_n(losses)
