import numpy as np
import pytest
import tensorflow as tf

from tf_kd import svd

RNG = np.random.RandomState(2)


def same_up_to_sign(a, b, atol=1e-8):
    """Columns of a and b equal up to a sign each."""
    signs = np.sign(np.sum(a * b, axis=-2, keepdims=True))
    np.testing.assert_allclose(a * signs, b, atol=atol)


def test_svd_matches_numpy():
    x = RNG.randn(3, 5, 5, 4)
    s, u, v = svd.svd(tf.constant(x), 0)
    m = x.reshape(3, 25, 4)
    u_np, s_np, vt_np = np.linalg.svd(m, full_matrices=False)
    np.testing.assert_allclose(s, s_np, rtol=1e-10)
    same_up_to_sign(v.numpy(), np.swapaxes(vt_np, 1, 2))
    same_up_to_sign(u.numpy(), u_np)


def test_svd_leading_vectors_are_normalised():
    x = RNG.randn(2, 4, 4, 6)
    s, u, v = svd.svd(tf.constant(x), 2)
    _, s_np, _ = np.linalg.svd(x.reshape(2, 16, 6), full_matrices=False)
    np.testing.assert_allclose(s, s_np[:, :2] / np.linalg.norm(s_np[:, :2], axis=1, keepdims=True))
    assert u.shape == (2, 16, 2) and v.shape == (2, 6, 2)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1)


@pytest.mark.parametrize("shape", [(2, 6, 6, 4), (2, 2, 2, 12), (2, 3, 3, 8)])
def test_svd_eid_vectors_match_svd_up_to_sign(shape):
    # HW > D (eigh of x^T x), HW < D (svd of x x^T), 2/3 < HW/D < 3/2 (svd)
    x = tf.constant(RNG.randn(*shape))
    s_e, _, v_e = svd.svd_eid(x, 3)
    s_tf, _, v_tf = tf.linalg.svd(tf.reshape(x, [shape[0], -1, shape[-1]]), full_matrices=False)
    np.testing.assert_allclose(s_e, s_tf[:, :3] / tf.norm(s_tf[:, :3], axis=1, keepdims=True))
    same_up_to_sign(v_e.numpy(), v_tf[:, :, :3].numpy())


def v_loss(v, w):
    """A loss of the leading right singular vectors, invariant to their sign."""
    return tf.reduce_sum(tf.square(tf.matmul(v[:, :, :2], w, transpose_a=True)))


def test_custom_gradient_is_twice_the_true_gradient_for_tall_matrices():
    # TF1's `Svd_` formula uses X + X^T where the exact gradient has
    # (X + X^T) / 2: for HW >= D it is exactly 2x the autodiff gradient.
    x = tf.constant(RNG.randn(2, 20, 5))
    w = tf.constant(RNG.randn(5, 3))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        custom = v_loss(svd.svd(x, 0)[2], w)
        exact = v_loss(tf.linalg.svd(x, full_matrices=False)[2], w)
    np.testing.assert_allclose(tape.gradient(custom, x), 2 * tape.gradient(exact, x), atol=1e-9)


def test_custom_gradient_matches_central_differences_for_tall_matrices():
    x0 = RNG.randn(1, 8, 3)
    w = tf.constant(RNG.randn(3, 2))

    def loss(x):
        return v_loss(tf.linalg.svd(x, full_matrices=False)[2], w)

    x = tf.constant(x0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        custom = v_loss(svd.svd(x, 0)[2], w)
    grad = tape.gradient(custom, x).numpy()
    numeric = np.zeros_like(x0)
    eps = 1e-6
    for index in np.ndindex(x0.shape):
        step = np.zeros_like(x0)
        step[index] = eps
        numeric[index] = (float(loss(tf.constant(x0 + step)))
                          - float(loss(tf.constant(x0 - step)))) / (2 * eps)
    np.testing.assert_allclose(grad, 2 * numeric, atol=1e-5)


def tf1_left_grad(x, dv):
    """TF1 `gradient_svd`'s `left_grad` branch (HW < D) in NumPy."""
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    v = vt.T
    k = len(s)
    kt = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            if i != j:
                kt[j, i] = 1 / (s[i] ** 2 - s[j] ** 2)
    big_s = np.diag(s)
    d = dv @ np.diag(1 / (s + 1e-8))
    inner = np.diag(np.diag(v.T @ d))
    m = kt * (d.T @ v @ big_s)
    inner = inner + 2 * big_s @ (m + m.T)
    return ((d - v @ inner) @ u.T).T, v


def test_custom_gradient_follows_tf1_formula_for_wide_matrices():
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
    x = tf.constant(RNG.randn(2, 3, 3, 8))     # HW/D = 9/8
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(svd.svd_eid(x, 1)[2])
    assert tape.gradient(loss, x) is None


def test_align_rsv():
    x = RNG.randn(3, 6, 4)
    y = RNG.randn(3, 6, 2)
    aligned, same = svd.align_rsv(tf.constant(x), tf.constant(y))
    np.testing.assert_array_equal(same, y)
    for b in range(3):
        cosine = x[b].T @ y[b]
        for j in range(2):
            best = np.argmax(np.abs(cosine[:, j]))
            np.testing.assert_allclose(aligned[b, :, j], x[b, :, best] * np.sign(cosine[best, j]))


def test_removenan():
    np.testing.assert_array_equal(svd.removenan(tf.constant([1.0, np.nan, np.inf])), [1, 0, 0])
