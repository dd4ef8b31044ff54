"""Singular value decomposition of feature maps with TF1's custom gradient
(TF1 `nets/SVP.py`; Lee et al., ECCV 2018; Lee & Song, BMVC 2019).

A feature map `[B, H, W, D]` is read as a batch of `HW x D` matrices. `svd`
decomposes it with `tf.linalg.svd`; `svd_eid` finds the same vectors from the
eigen-decomposition of the smaller Gram matrix. Both back-propagate through
TF1's registered `Svd_` gradient, which uses only the gradient of the right
singular vectors `V`. They run on the device the tensors live on (TF1 pinned
the decomposition to the CPU).
"""

import tensorflow as tf


def removenan(x):
    """Replace non-finite entries by zero."""
    return tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))


def _t(x):
    return tf.linalg.matrix_transpose(x)


def svd_gradient(s, u, v, dv):
    """TF1 `gradient_svd`: the gradient reaching `x = u diag(s) v^T` from the
    gradient `dv` of the right singular vectors (those of `ds` and `du` are
    ignored, as in TF1). For `HW >= D` it is the exact gradient; for
    `HW < D` TF1 applies the formula to the transpose with `1 / (s + 1e-8)`,
    which is kept."""
    S = tf.linalg.diag(s)
    s2 = tf.square(s)
    eye = tf.eye(tf.shape(s)[-1], dtype=s.dtype)[None]
    k = (1 - eye) / (s2[:, :, None] - s2[:, None, :] + eye)
    k_t = removenan(_t(k))

    def msym(m):
        return m + _t(m)

    if v.shape[1] > u.shape[1]:      # wide matrix: TF1's `left_grad`
        d = dv @ tf.linalg.diag(1 / (s + 1e-8))
        inner = (tf.linalg.diag(tf.linalg.diag_part(_t(v) @ d))
                 + 2 * S @ msym(k_t * (_t(d) @ v @ S)))
        return _t((d - v @ inner) @ _t(u))
    return 2 * u @ (S @ msym(k_t * (_t(v) @ dv))) @ _t(v)   # `right_grad`


@tf.custom_gradient
def _svd(x):
    s, u, v = tf.linalg.svd(x, full_matrices=False)

    def grad(ds, du, dv):
        return svd_gradient(s, u, v, dv)

    return (s, u, v), grad


def _with_svd_gradient(x, s, u, v):
    """Identity on `(s, u, v)`, computed without gradient from `x`, that
    back-propagates into `x` through `svd_gradient` (TF1 `SVD_grad_map`)."""

    @tf.custom_gradient
    def grad_map(x):
        def grad(ds, du, dv):
            return svd_gradient(s, u, v, dv)
        return (tf.identity(s), tf.identity(u), tf.identity(v)), grad

    return grad_map(x)


def _as_matrices(x, n):
    """`[B, H, W, D]` -> `[B, HW, D]`; a vector batch becomes `[B, 1, D]`
    with one vector (TF1's handling of ranks 4, 3 and 2)."""
    if x.shape.rank == 4:
        return tf.reshape(x, [-1, x.shape[1] * x.shape[2], x.shape[3]]), n
    if x.shape.rank == 3:
        return x, n
    return x[:, None], 1


def _leading(s, u, v, n):
    """The first `n` singular values and vectors, each l2-normalised."""
    return (tf.math.l2_normalize(s[:, :n], 1), tf.math.l2_normalize(u[:, :, :n], 1),
            tf.math.l2_normalize(v[:, :, :n], 1))


def svd(x, n):
    """TF1 `SVP.SVD`: the `n` leading singular values and vectors of a
    feature map, normalised; `n = 0` returns the whole decomposition."""
    x, n = _as_matrices(x, n)
    s, u, v = (removenan(t) for t in _svd(x))
    return _leading(s, u, v, n) if n > 0 else (s, u, v)


def svd_eid(x, n):
    """TF1 `SVP.SVD_eid`: the `n` leading singular values and vectors found
    by an eigen-decomposition of the smaller of `x^T x` and `x x^T`.

    Near-square matrices (2/3 < HW/D < 3/2) use `tf.linalg.svd` directly;
    TF1 decomposes the gradient-stopped input there, so no gradient flows
    back in that case, which is kept.
    """
    x, n = _as_matrices(x, n)
    hw, d = x.shape[1], x.shape[2]
    x_ = tf.stop_gradient(x)
    if 2 / 3 < hw / d < 3 / 2:
        s, u, v = tf.linalg.svd(x_, full_matrices=False)
    else:
        if hw < d:
            _, u, _ = tf.linalg.svd(x_ @ _t(x_), full_matrices=False)
            v = _t(x_) @ u
            s = tf.norm(v, axis=1)
            v = removenan(v / s[:, None])
        else:
            _, v = tf.linalg.eigh(_t(x_) @ x_)
            v = tf.reverse(v, [2])                 # descending eigenvalues
            u = x_ @ v
            s = tf.norm(u, axis=1)
            u = removenan(u / s[:, None])
        s, u, v = _with_svd_gradient(x, s, u, v)
    return _leading(s, u, v, n)


def align_rsv(x, y):
    """TF1 `Align_rsv`: for each vector of `y` [B, D, k], the vector of `x`
    [B, D, m] with the largest |cosine|, sign-corrected to agree with it."""
    cosine = _t(x) @ y
    best = tf.equal(tf.reduce_max(tf.abs(cosine), 1, keepdims=True), tf.abs(cosine))
    mask = tf.where(best, tf.sign(cosine), tf.zeros_like(cosine))
    return x @ mask, y
