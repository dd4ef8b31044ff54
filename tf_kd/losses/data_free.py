"""Soft-targeted transfer-set synthesis (Wang, "Data-free knowledge
distillation with soft targeted transfer set synthesis", AAAI 2021,
arXiv 2104.04868): the teacher's pre-softmax feature space modelled as a
multivariate normal, the soft targets sampled from it, and the objective that
turns random noise into pseudo samples the teacher maps onto them.

    R_ij = w_i . w_j / (||w_i|| ||w_j||)      (w_i: class i's dense weights)
    Sigma = D R D,  D = diag(sigma, ..., sigma),  s ~ N(mu, Sigma)
    y_soft = softmax(s / tau)
    L = KL(y_soft || softmax(a_T(x) / tau)) + alpha * L_a,
    L_a = -1/n sum_i ||x_conv-1^i||_1
"""

import tensorflow as tf


def correlation_matrix(kernel):
    """The paper's `R`: cosine similarities of the class weight vectors, the
    columns of the final dense layer's `[D, k]` kernel."""
    weights = tf.math.l2_normalize(tf.cast(kernel, tf.float32), axis=0)
    return tf.matmul(weights, weights, transpose_a=True)


def sample_logits(correlation, sigma, count, seed):
    """`count` draws of `s ~ N(0, D R D)`, `D = sigma I`, as `[count, k]`.

    `R` is a Gram matrix, so positive semi-definite in exact arithmetic, but
    singular when the dense layer has fewer inputs than classes and slightly
    indefinite after rounding, so it has no Cholesky factor in general. The
    draw goes through its eigen-decomposition, negative eigenvalues clipped
    to zero: `s = sigma V sqrt(max(lambda, 0)) z`, `z ~ N(0, I)`, whose
    covariance is `sigma^2` times the nearest positive semi-definite matrix
    to `R`. The mean is zero: the paper's sigma alone decides between
    near-uniform (small) and peaked (large) targets, which needs a mean with
    equal components, and softmax ignores a constant shift.
    """
    eigenvalues, eigenvectors = tf.linalg.eigh(tf.cast(correlation, tf.float64))
    root = eigenvectors * tf.sqrt(tf.maximum(eigenvalues, 0.0))
    z = tf.random.stateless_normal([count, root.shape[0]], seed, dtype=tf.float64)
    return tf.cast(sigma * tf.matmul(z, root, transpose_b=True), tf.float32)


def soft_targets(logits, tau):
    """`y_soft = softmax(s / tau)`."""
    return tf.nn.softmax(logits / tau)


def soft_target_loss(targets, teacher_logits, tau):
    """`d(y_soft, y_hat)`: batch mean of `KL(y_soft || softmax(a_T / tau))`."""
    return tf.reduce_mean(tf.reduce_sum(
        tf.math.xlogy(targets, targets)
        - targets * tf.nn.log_softmax(teacher_logits / tau), axis=-1))


def activation_loss(activation):
    """`L_a = -1/n sum_i ||a_i||_1` over the batch of first-layer activations."""
    return -tf.reduce_mean(tf.reduce_sum(
        tf.abs(tf.reshape(activation, [tf.shape(activation)[0], -1])), axis=-1))


def synthesis_loss(targets, teacher_logits, activation, tau, activation_weight):
    """The pseudo samples' objective `d(y_soft, y_hat) + alpha * L_a`."""
    return (soft_target_loss(targets, teacher_logits, tau)
            + activation_weight * activation_loss(activation))
