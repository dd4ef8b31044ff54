"""Neuron selectivity transfer (Huang & Wang, "Like what you like: knowledge
distill via neuron selectivity transfer", arXiv 1707.01219).

Each channel's spatial activation map is one sample of the network's
"neuron selectivity" distribution; NST matches the teacher's and the
student's distributions by the squared maximum mean discrepancy with the
kernel trick, the maps l2-normalised first:

    MMD^2 = mean k(t_i, t_i') + mean k(s_j, s_j') - 2 mean k(t_i, s_j)
"""

import tensorflow as tf

# The loss weight lambda the paper uses with each kernel (total loss
# CE + lambda / 2 * MMD^2).
KERNEL_WEIGHTS = {"linear": 50.0, "poly": 50.0, "gaussian": 16.0}


def selectivity_maps(feature):
    """`[B, H, W, C]` -> `[B, C, HW]`, each channel's map l2-normalised."""
    maps = tf.reshape(feature, [-1, feature.shape[1] * feature.shape[2], feature.shape[3]])
    return tf.math.l2_normalize(tf.transpose(maps, [0, 2, 1]), -1)


def squared_distances(x, y):
    """`||x_i - y_j||^2` for every pair of rows, `[B, n, m]`."""
    return (tf.reduce_sum(tf.square(x), -1)[:, :, None]
            + tf.reduce_sum(tf.square(y), -1)[:, None] - 2 * tf.matmul(x, y, transpose_b=True))


def mmd2(x, y, kernel="poly", degree=2, offset=0.0):
    """Squared MMD between the rows of `x` `[B, n, D]` and `y` `[B, m, D]`,
    per example. Kernels: `linear` `x.y`, `poly` `(x.y + c)^d`, `gaussian`
    `exp(-||x - y||^2 / (2 sigma^2))` with `sigma^2` the mean squared
    distance between the two sets (held constant)."""
    if kernel == "linear":
        def k(a, b):
            return tf.matmul(a, b, transpose_b=True)
    elif kernel == "poly":
        def k(a, b):
            return (tf.matmul(a, b, transpose_b=True) + offset) ** degree
    elif kernel == "gaussian":
        sigma2 = tf.stop_gradient(tf.reduce_mean(squared_distances(x, y), [1, 2],
                                                 keepdims=True))

        def k(a, b):
            return tf.exp(-squared_distances(a, b) / (2 * sigma2))
    else:
        raise ValueError(f"Unknown NST kernel {kernel!r}; valid: "
                         f"{', '.join(KERNEL_WEIGHTS)}.")
    return (tf.reduce_mean(k(x, x), [1, 2]) + tf.reduce_mean(k(y, y), [1, 2])
            - 2 * tf.reduce_mean(k(x, y), [1, 2]))


def nst(student_feats, teacher_feats, kernel="poly"):
    """NST's transfer loss: the batch mean of MMD^2 between the teacher's and
    the student's selectivity maps, summed over stages (unweighted)."""
    return tf.add_n([tf.reduce_mean(mmd2(selectivity_maps(t), selectivity_maps(s), kernel))
                     for s, t in zip(student_feats, teacher_feats)])
