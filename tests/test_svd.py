"""`tf_kd.svd` against NumPy / TensorFlow's own SVD, and TF1's custom
gradient against the exact (autodiff, finite-difference) gradient."""

import numpy as np
import pytest
import tensorflow as tf

from tf_kd import svd

RNG = np.random.RandomState(2)

# HW > D (eigh of x^T x), HW < D (svd of x x^T), 2/3 < HW/D < 3/2 (svd)
EID_SHAPES = [(2, 6, 6, 4), (2, 2, 2, 12), (2, 3, 3, 8)]


def np_svd(m):
    """Thin SVD of a batch `[B, M, N]` as `(s, u, v)` with `v` `[B, N, K]`."""
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    return s, u, np.swapaxes(vt, -1, -2)


def assert_same_up_to_sign(a, b, atol=1e-8):
    """Columns (axis -2 holds the entries) equal up to one sign each."""
    signs = np.sign(np.sum(a * b, axis=-2, keepdims=True))
    np.testing.assert_allclose(a * signs, b, atol=atol)


def normalised(a, axis):
    return a / np.linalg.norm(a, axis=axis, keepdims=True)


def matrices(x):
    return x.reshape(x.shape[0], -1, x.shape[-1])


# -- values and vectors

@pytest.mark.parametrize("shape", [(3, 5, 5, 4), (2, 2, 2, 9)])
def test_svd_full_decomposition_matches_numpy(shape):
    x = RNG.randn(*shape)
    s, u, v = svd.svd(tf.constant(x), 0)
    s_np, u_np, v_np = np_svd(matrices(x))
    np.testing.assert_allclose(s, s_np, rtol=1e-10)
    assert_same_up_to_sign(u.numpy(), u_np)
    assert_same_up_to_sign(v.numpy(), v_np)


def test_svd_leading_values_and_vectors_are_normalised():
    x = RNG.randn(2, 4, 4, 6)
    s, u, v = svd.svd(tf.constant(x), 2)
    s_np, u_np, v_np = np_svd(matrices(x))
    assert s.shape == (2, 2) and u.shape == (2, 16, 2) and v.shape == (2, 6, 2)
    np.testing.assert_allclose(s, normalised(s_np[:, :2], 1))
    assert_same_up_to_sign(u.numpy(), u_np[:, :, :2])
    assert_same_up_to_sign(v.numpy(), v_np[:, :, :2])


def test_svd_of_a_vector_batch_is_the_normalised_vector():
    x = RNG.randn(3, 7)                           # TF1: [B, 1, D], n forced to 1
    s, u, v = svd.svd(tf.constant(x), 5)
    assert s.shape == (3, 1) and u.shape == (3, 1, 1) and v.shape == (3, 7, 1)
    np.testing.assert_allclose(s, 1)
    assert_same_up_to_sign(v.numpy(), normalised(x, 1)[:, :, None])


@pytest.mark.parametrize("shape", EID_SHAPES)
def test_svd_eid_matches_tf_svd_up_to_sign(shape):
    x = tf.constant(RNG.randn(*shape))
    s_e, u_e, v_e = svd.svd_eid(x, 3)
    s_tf, u_tf, v_tf = tf.linalg.svd(tf.reshape(x, [shape[0], -1, shape[-1]]),
                                     full_matrices=False)
    np.testing.assert_allclose(s_e, normalised(s_tf[:, :3].numpy(), 1), rtol=1e-10)
    assert_same_up_to_sign(v_e.numpy(), v_tf[:, :, :3].numpy())
    assert_same_up_to_sign(u_e.numpy(), u_tf[:, :, :3].numpy())


@pytest.mark.parametrize("shape", [(2, 4, 4, 5), (2, 2, 2, 10)])
@pytest.mark.parametrize("decompose", [svd.svd, svd.svd_eid])
def test_dead_channels_give_finite_values_and_gradients(decompose, shape):
    # post-ReLU features often have all-zero channels: zero singular values
    # (here two, so 1 / (s_i^2 - s_j^2) is infinite) are cleaned by removenan
    x = RNG.rand(*shape)
    x[..., :2] = 0
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        s, u, v = decompose(x, shape[-1] // 2)
        loss = tf.reduce_sum(tf.square(v[:, 1:3]))
    assert all(np.all(np.isfinite(t)) for t in (s, u, v))
    assert np.all(np.isfinite(tape.gradient(loss, x)))


# -- TF1's gradient

def v_loss(v, w):
    """A loss of the two leading right singular vectors, invariant to their signs."""
    return tf.reduce_sum(tf.square(tf.matmul(v[:, :, :2], w, transpose_a=True)))


def custom_and_exact_gradients(x, loss_of_outputs):
    """Gradients of a loss of `(s, u, v)` through `svd.svd(x, 0)` (TF1's
    gradient) and through `tf.linalg.svd` (TensorFlow's exact one)."""
    x = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        custom = loss_of_outputs(*svd.svd(x, 0))
        exact = loss_of_outputs(*tf.linalg.svd(x, full_matrices=False))
    return tape.gradient(custom, x).numpy(), tape.gradient(exact, x).numpy()


@pytest.mark.parametrize("shape", [(2, 20, 5), (2, 6, 6)])
def test_tall_and_square_gradient_is_twice_the_exact_one(shape):
    w = tf.constant(RNG.randn(shape[-1], 3))
    custom, exact = custom_and_exact_gradients(RNG.randn(*shape), lambda s, u, v: v_loss(v, w))
    assert np.abs(exact).max() > 1e-3
    np.testing.assert_allclose(custom, 2 * exact, atol=1e-9)


def test_tall_gradient_against_central_differences():
    x0 = RNG.randn(1, 8, 3)
    w = tf.constant(RNG.randn(3, 2))

    def loss(x):
        return float(v_loss(np_svd(x)[2], w))

    custom, _ = custom_and_exact_gradients(x0, lambda s, u, v: v_loss(v, w))
    numeric = np.zeros_like(x0)
    eps = 1e-6
    for index in np.ndindex(x0.shape):
        step = np.zeros_like(x0)
        step[index] = eps
        numeric[index] = (loss(x0 + step) - loss(x0 - step)) / (2 * eps)
    np.testing.assert_allclose(custom, 2 * numeric, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 20, 5), (2, 5, 20)])
def test_gradients_of_s_and_u_are_dropped(shape):
    # TF1's formula only uses the gradient reaching v
    x = RNG.randn(*shape)
    weights = tf.constant(RNG.rand(shape[1], 1))
    for loss in (lambda s, u, v: tf.reduce_sum(s),
                 lambda s, u, v: tf.reduce_sum(tf.square(u[:, :, :2]) * weights)):
        custom, exact = custom_and_exact_gradients(x, loss)
        assert np.abs(exact).max() > 1e-3
        np.testing.assert_array_equal(custom, 0)


def tf1_left_grad(x, dv):
    """TF1 `gradient_svd`'s `left_grad` (HW < D) transcribed in NumPy."""
    s, u, v = (a[0] for a in np_svd(x[None]))
    k = len(s)
    kt = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            if i != j:
                kt[j, i] = 1 / (s[i] ** 2 - s[j] ** 2)
    big_s = np.diag(s)
    u, v, du = v, u, dv                              # TF1's swap
    d = du @ np.diag(1 / (s + 1e-8))
    m = kt * (d.T @ u @ big_s)
    inner = np.diag(np.diag(u.T @ d)) + 2 * big_s @ (m + m.T)
    return ((d - u @ inner) @ v.T).T, u


def test_wide_gradient_follows_tf1_formula():
    x = RNG.randn(4, 9)
    dv = RNG.randn(9, 4)
    expected, v_np = tf1_left_grad(x, dv)
    xt = tf.constant(x[None])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        v = svd.svd(xt, 0)[2]
        signs = np.sign(np.sum(v.numpy()[0] * v_np, 0))   # match LAPACK's signs
        loss = tf.reduce_sum(v * (dv * signs)[None])
    np.testing.assert_allclose(tape.gradient(loss, xt)[0], expected, atol=1e-8)


def test_wide_gradient_is_exact_only_outside_the_span_of_v():
    # TF1's `left_grad`: G = u (C^T v^T + diag(1/(s+1e-8)) dv^T (I - v v^T)),
    # with C[i, j] = (A_ij (s_i^2 + s_j^2) - 2 A_ji s_j^2) / (s_j (s_j^2 - s_i^2)),
    # A = v^T dv, where the exact gradient has C = (A - A^T) s_j / (s_j^2 - s_i^2).
    x = RNG.randn(1, 4, 9)
    dv = RNG.randn(1, 9, 4)
    custom, exact = custom_and_exact_gradients(x, lambda s, u, v: tf.reduce_sum(v * dv))
    s, u, v = (a[0].numpy() for a in tf.linalg.svd(x, full_matrices=False))
    outside = np.eye(9) - v @ v.T
    np.testing.assert_allclose(custom[0] @ outside, exact[0] @ outside, atol=1e-7)
    a = v.T @ dv[0]
    si, sj = s[:, None], s[None, :]
    off = ~np.eye(4, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        tf1 = np.where(off, (a * (si ** 2 + sj ** 2) - 2 * a.T * sj ** 2)
                       / (sj * (sj ** 2 - si ** 2)), 0)
        true = np.where(off, (a - a.T) * sj / (sj ** 2 - si ** 2), 0)
    np.testing.assert_allclose((u.T @ custom[0] @ v).T, tf1, atol=1e-6)
    np.testing.assert_allclose((u.T @ exact[0] @ v).T, true, atol=1e-9)
    assert not np.allclose(custom, exact, atol=1e-2)
    assert not np.allclose(custom, 2 * exact, atol=1e-2)


@pytest.mark.parametrize("shape", [(2, 5, 5, 3), (2, 2, 2, 9)])
def test_svd_eid_gradient_is_the_svd_gradient(shape):
    x = tf.constant(RNG.randn(*shape))
    w = tf.constant(RNG.randn(shape[-1], 1))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        v_eid = svd.svd_eid(x, 2)[2]
        v_svd = svd.svd(x, 2)[2]
        signs = tf.sign(tf.reduce_sum(v_eid * v_svd, 1, keepdims=True))
        loss_eid = tf.reduce_sum(tf.matmul(v_eid, w, transpose_a=True))
        loss_svd = tf.reduce_sum(tf.matmul(v_svd * signs, w, transpose_a=True))
    np.testing.assert_allclose(tape.gradient(loss_eid, x), tape.gradient(loss_svd, x), atol=1e-6)


def test_svd_eid_near_square_passes_no_gradient():
    x = tf.constant(RNG.randn(2, 3, 3, 8))     # HW/D = 9/8: TF1 stops the gradient
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(svd.svd_eid(x, 1)[2])
    assert tape.gradient(loss, x) is None


@pytest.mark.parametrize("shape", EID_SHAPES)
def test_tf_function_with_unknown_batch(shape):
    x = tf.constant(RNG.randn(*shape), tf.float32)
    w = tf.constant(RNG.randn(shape[-1], 2), tf.float32)

    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            s_e, _, v_e = svd.svd_eid(x, 2)
            s, _, v = svd.svd(x, 2)
            loss = v_loss(v_e, w) + v_loss(v, w)
        return s_e, v_e, s, v, tape.gradient(loss, x)

    graph = tf.function(run, input_signature=[tf.TensorSpec([None, *shape[1:]], tf.float32)],
                        jit_compile=False)
    for eager, traced in zip(run(x), graph(x)):
        np.testing.assert_allclose(np.abs(traced), np.abs(eager), rtol=1e-4, atol=1e-4)


# -- alignment

def test_align_rsv_matches_numpy():
    x = normalised(RNG.randn(3, 6, 4), 1)
    y = normalised(RNG.randn(3, 6, 2), 1)
    aligned, same = svd.align_rsv(tf.constant(x), tf.constant(y))
    np.testing.assert_array_equal(same, y)
    expected = np.zeros_like(y)
    for b, j in np.ndindex(3, 2):
        cosine = x[b].T @ y[b, :, j]
        best = np.argmax(np.abs(cosine))
        expected[b, :, j] = x[b, :, best] * np.sign(cosine[best])
    np.testing.assert_allclose(aligned, expected)
    assert np.all(np.sum(aligned.numpy() * y, 1) > 0)


def test_removenan():
    np.testing.assert_array_equal(
        svd.removenan(tf.constant([1.0, np.nan, np.inf, -np.inf])), [1, 0, 0, 0])
