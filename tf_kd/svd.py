"""Singular value decomposition of feature maps with TF1's custom gradient.

Port of TF1 `nets/SVP.py` (Lee et al., "Self-supervised knowledge
distillation using singular value decomposition", ECCV 2018; reused by Lee &
Song, "Graph-based knowledge distillation by multi-head attention network",
BMVC 2019).

A feature map `[B, H, W, D]` is read as a batch of `HW x D` matrices
`x = u diag(s) v^T` (`K = min(HW, D)` singular values). `svd` decomposes it
with `tf.linalg.svd`; `svd_eid` gets the same vectors from an eigen-
decomposition of the smaller Gram matrix. Both back-propagate through TF1's
registered `Svd_` gradient (`svd_gradient` below), not through TensorFlow's
own SVD gradient. What that gradient does, measured against the exact
(autodiff) gradient, and checked in `tests/test_svd.py`:

- only the gradient of the right singular vectors `v` is used; whatever
  reaches `s` or `u` is dropped (a loss of `s` or `u` alone gets a zero
  gradient);
- tall and square matrices (`HW >= D`, TF1's `right_grad`): exactly twice
  the exact gradient of `v` (the formula carries a factor 2 the exact one
  does not have);
- wide matrices (`HW < D`, TF1's `left_grad`, a left-singular-vector
  formula applied to `x^T`, with `1 / (s + 1e-8)`): the component outside
  the span of `v` is exact, the component inside it is neither exact nor a
  multiple of it (see `svd_gradient`).

TF1 pinned the decompositions to the CPU; here they run on the tensors' own
device. Spatial and channel sizes must be static; the batch may be unknown.
"""

import tensorflow as tf


def removenan(x):
    """Replace the non-finite entries of `x` by zero (TF1 `removenan`)."""
    return tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))


def _mT(x):
    return tf.linalg.matrix_transpose(x)


def _diag(x):
    return tf.linalg.diag(x)


def svd_gradient(s, u, v, dv):
    """TF1 `gradient_svd` (the gradient registered as `Svd_`).

    Given a batch `x = u diag(s) v^T` (`u: [B, M, K]`, `v: [B, N, K]`) and
    the gradient `dv` reaching `v`, returns the gradient reaching `x`,
    `[B, M, N]`. With `F[i, j] = 1 / (s_j^2 - s_i^2)` (0 on the diagonal)
    and `A = v^T dv`:

    - `M >= N` (`right_grad`): `2 u diag(s) (F o (A - A^T)) v^T`, twice the
      exact gradient;
    - `M < N` (`left_grad`: TF1 applies a left-vector formula to `x^T`, whose
      left vectors are `v`): the gradient is `u (C^T v^T + diag(1/(s + 1e-8))
      dv^T (I - v v^T))`. The second term, outside `span(v)`, is the exact
      one; inside it TF1 has
      `C[i, j] = (A_ij (s_i^2 + s_j^2) - 2 A_ji s_j^2) / (s_j (s_j^2 - s_i^2))`
      where the exact gradient has `(A_ij - A_ji) s_j / (s_j^2 - s_i^2)`, so
      this branch is neither the exact gradient nor a multiple of it.

    The branch follows TF1 (`left_grad` when `N > M`). The author's TF2
    re-implementation (`Knowledge_distillation_via_TF2.0`, `distiller/SVD.py`)
    swaps the condition; TF1 is followed here.
    """
    big_s = _diag(s)
    s2 = tf.square(s)
    eye = tf.eye(tf.shape(s)[-1], dtype=s.dtype)[None]
    # k[i, j] = 1 / (s_i^2 - s_j^2) off the diagonal; TF1 uses its transpose.
    # (removenan before the transpose: the other order has TensorFlow's graph
    # optimiser transpose a boolean mask, which its oneDNN kernels refuse on
    # CPUs without AVX-512, with an error line.)
    k = (1 - eye) / (s2[:, :, None] - s2[:, None, :] + eye)
    k_t = _mT(removenan(k))

    def msym(m):
        return m + _mT(m)

    def left_grad():
        # TF1 swaps (u, v) and (du, dv), so its `U` is our `v`, `dU` our `dv`.
        d = dv @ _diag(1 / (s + 1e-8))
        inner = (_diag(tf.linalg.diag_part(_mT(v) @ d))
                 + 2 * big_s @ msym(k_t * (_mT(d) @ (v @ big_s))))
        return _mT((d - v @ inner) @ _mT(u))

    def right_grad():
        return 2 * u @ (big_s @ msym(k_t * (_mT(v) @ dv))) @ _mT(v)

    rows, cols = u.shape[1], v.shape[1]
    if rows is not None and cols is not None:
        return left_grad() if cols > rows else right_grad()
    return tf.cond(tf.shape(v)[1] > tf.shape(u)[1], left_grad, right_grad)


def _upstream(grad, like):
    return tf.zeros_like(like) if grad is None else grad


@tf.custom_gradient
def _svd(x):
    """`tf.linalg.svd(x, full_matrices=False)` with TF1's `Svd_` gradient."""
    s, u, v = tf.linalg.svd(x, full_matrices=False)

    def grad(ds, du, dv):
        del ds, du                        # unused by TF1's formula
        return svd_gradient(s, u, v, _upstream(dv, v))

    return (s, u, v), grad


def _map_gradient(x, s, u, v):
    """TF1 `SVD_grad_map`: returns `(s, u, v)`, a decomposition of `x`
    computed without gradient, and sends their gradient back to `x` through
    `svd_gradient` (none reaches `s`, `u`, `v` themselves)."""

    @tf.custom_gradient
    def grad_map(x):
        def grad(ds, du, dv):
            del ds, du
            return svd_gradient(s, u, v, _upstream(dv, v))

        return (tf.identity(s), tf.identity(u), tf.identity(v)), grad

    return grad_map(x)


def _as_matrices(x, n):
    """`[B, H, W, D] -> [B, HW, D]`; `[B, M, N]` as is; a vector batch
    `[B, D]` becomes `[B, 1, D]` and gets one vector (TF1's rank handling)."""
    x = tf.convert_to_tensor(x)
    if x.shape.rank == 4:
        _, h, w, d = x.shape
        if None in (h, w, d):
            raise ValueError(f"spatial and channel sizes must be static, got {x.shape}")
        return tf.reshape(x, [-1, h * w, d]), n
    if x.shape.rank == 3:
        return x, n
    if x.shape.rank == 2:
        return x[:, None], 1
    raise ValueError(f"expected a tensor of rank 2, 3 or 4, got {x.shape}")


def _leading(s, u, v, n):
    """The first `n` singular values and vectors, each l2-normalised (the
    values over the `n` of them, each vector over its entries)."""
    return (tf.math.l2_normalize(s[:, :n], 1),
            tf.math.l2_normalize(u[:, :, :n], 1),
            tf.math.l2_normalize(v[:, :, :n], 1))


def svd(x, n):
    """TF1 `SVP.SVD`: `(s, u, v)` of the `n` leading singular values
    `[B, n]` and left / right singular vectors `[B, HW, n]`, `[B, D, n]` of a
    feature map, each l2-normalised; non-finite entries are zeroed. `n = 0`
    returns the whole thin decomposition unnormalised. Gradient: TF1's `Svd_`
    (`svd_gradient`)."""
    x, n = _as_matrices(x, n)
    s, u, v = (removenan(t) for t in _svd(x))
    return _leading(s, u, v, n) if n > 0 else (s, u, v)


def svd_eid(x, n):
    """TF1 `SVP.SVD_eid`: `svd` computed through the smaller Gram matrix.

    The decomposition is computed from the gradient-stopped input:

    - `2/3 < HW/D < 3/2`: `tf.linalg.svd` itself. TF1 decomposes the
      gradient-stopped input here and never maps the gradient back, so NO
      gradient reaches `x` on this path (kept; no CIFAR stage falls on it);
    - `HW < D`: `u` from the SVD of `x x^T`, `v = x^T u` normalised, `s` the
      norms;
    - otherwise: `v` the eigenvectors of `x^T x` in descending order of
      eigenvalue, `u = x v` normalised, `s` the norms.

    On the last two paths the gradient of `v` reaches `x` through
    `svd_gradient`, as TF1's `SVD_grad_map`. Returns the `n` leading values
    and vectors, l2-normalised like `svd`.
    """
    x, n = _as_matrices(x, n)
    hw, d = x.shape[1], x.shape[2]
    if hw is None or d is None:
        raise ValueError(f"matrix sizes must be static, got {x.shape}")
    fixed = tf.stop_gradient(x)
    if 2 / 3 < hw / d < 3 / 2:
        s, u, v = tf.linalg.svd(fixed, full_matrices=False)
    else:
        if hw < d:
            _, u, _ = tf.linalg.svd(fixed @ _mT(fixed), full_matrices=False)
            v = _mT(fixed) @ u
            s = tf.norm(v, axis=1)
            v = removenan(v / s[:, None])
        else:
            _, v = tf.linalg.eigh(_mT(fixed) @ fixed)
            v = tf.reverse(v, [2])          # eigh sorts ascending
            u = fixed @ v
            s = tf.norm(u, axis=1)
            u = removenan(u / s[:, None])
        s, u, v = _map_gradient(x, s, u, v)
    return _leading(s, u, v, n)


def align_rsv(x, y):
    """TF1 `SVP.Align_rsv`: `(x @ mask, y)` where `mask[b, i, j]` is
    `sign(cos_ij)` for the column `i` of `x` `[B, D, m]` with the largest
    `|cos_ij| = |x_i . y_j|` against column `j` of `y` `[B, D, k]`, else 0.
    For unit vectors the result is, per column of `y`, the closest vector of
    `x` with its sign flipped to agree with it."""
    cosine = _mT(x) @ y
    magnitude = tf.abs(cosine)
    best = tf.equal(tf.reduce_max(magnitude, 1, keepdims=True), magnitude)
    mask = tf.where(best, tf.sign(cosine), tf.zeros_like(cosine))
    return x @ mask, y
