"""Shared-representation knowledge: relations between two feature maps
(TF1 `nets/Shared.py`)."""

import tensorflow as tf

from tf_kd import svd as svd_ops


def gram(top, bottom):
    """The FSP matrix `top^T bottom / HW` of two consecutive feature maps;
    the larger one is max-pooled 2x2 first (TF1 `Grammian`)."""
    if top.shape[1] > bottom.shape[1]:
        top = tf.nn.max_pool2d(top, 2, 2, "VALID")
    hw = bottom.shape[1] * bottom.shape[2]
    top = tf.reshape(top, [-1, hw, top.shape[-1]])
    bottom = tf.reshape(bottom, [-1, hw, bottom.shape[-1]])
    return tf.matmul(top, bottom, transpose_a=True) / hw


def fsp(student_feats, teacher_feats, weight=1e-3):
    """Yim et al., "A gift from knowledge distillation", CVPR 2017: half the
    squared distance between the FSP matrices of each pair of consecutive
    stages, averaged over the batch, summed, times `weight`."""
    losses = []
    for i in range(len(student_feats) - 1):
        g_s = gram(student_feats[i], student_feats[i + 1])
        g_t = tf.stop_gradient(gram(teacher_feats[i], teacher_feats[i + 1]))
        losses.append(tf.reduce_mean(tf.reduce_sum(tf.square(g_t - g_s), [1, 2]) / 2))
    return tf.add_n(losses) * weight


def rbf_graph(v, v_prev):
    """`exp(-(v_i - w_j)^2 / 8)` between every pair of entries of the
    vectors of two consecutive stages: `[B, D, D_prev, k]`."""
    return tf.exp(-tf.square(v[:, :, None] - v_prev[:, None]) / 8)


def kd_svd(student_feats, teacher_feats, dist_type="SVD", num_teacher=1):
    """Lee et al., "Self-supervised knowledge distillation using singular
    value decomposition", ECCV 2018 (TF1 `KD_SVD`).

    Per stage the teacher's `num_teacher` leading right singular vectors and
    the student's `num_teacher + 3`, the latter aligned to the former and
    both scaled by the teacher's normalised singular values; the loss is the
    summed squared difference between the RBF graphs of consecutive stages
    (non-finite terms dropped). `dist_type` "SVD" uses `tf.linalg.svd`,
    "EID" the eigen-decomposition route.
    """
    decompose = {"SVD": svd_ops.svd, "EID": svd_ops.svd_eid}[dist_type]
    losses = []
    v_s_prev = v_t_prev = None
    for sfm, tfm in zip(student_feats, teacher_feats):
        sigma_t, _, v_t = decompose(tfm, num_teacher)
        _, _, v_s = decompose(sfm, num_teacher + 3)
        v_s, v_t = svd_ops.align_rsv(v_s, v_t)
        v_t = v_t * sigma_t[:, None]
        v_s = v_s * sigma_t[:, None]
        if v_s_prev is not None:
            difference = tf.square(rbf_graph(v_s, v_s_prev)
                                   - tf.stop_gradient(rbf_graph(v_t, v_t_prev)))
            losses.append(tf.reduce_sum(svd_ops.removenan(difference)))
        v_s_prev, v_t_prev = v_s, v_t
    return tf.add_n(losses)
