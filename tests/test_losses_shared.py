import numpy as np
import pytest
import tensorflow as tf

from tf_kd.losses import shared

RNG = np.random.RandomState(3)


def max_pool(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max((2, 4))


def gram(top, bottom):
    if top.shape[1] > bottom.shape[1]:
        top = max_pool(top)
    hw = bottom.shape[1] * bottom.shape[2]
    return np.einsum("bpi,bpj->bij", top.reshape(len(top), hw, -1),
                     bottom.reshape(len(bottom), hw, -1)) / hw


def stage_feats(widths=(3, 5, 4), sizes=(8, 4, 2)):
    return [RNG.randn(2, s, s, w) for s, w in zip(sizes, widths)]


def test_fsp():
    s, t = stage_feats(), stage_feats()
    expected = sum(np.mean(np.sum((gram(t[i], t[i + 1]) - gram(s[i], s[i + 1])) ** 2, (1, 2)) / 2)
                   for i in range(2)) * 1e-3
    got = shared.fsp([tf.constant(x) for x in s], [tf.constant(x) for x in t])
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_fsp_does_not_differentiate_the_teacher():
    s = [tf.constant(x) for x in stage_feats()]
    t = [tf.Variable(x) for x in stage_feats()]
    with tf.GradientTape() as tape:
        loss = shared.fsp(s, t)
    assert all(g is None for g in tape.gradient(loss, t))


def test_rbf_graph():
    v, w = RNG.randn(2, 4, 1), RNG.randn(2, 3, 1)
    got = shared.rbf_graph(tf.constant(v), tf.constant(w)).numpy()
    assert got.shape == (2, 4, 3, 1)
    for b, i, j in np.ndindex(2, 4, 3):
        assert got[b, i, j, 0] == pytest.approx(np.exp(-(v[b, i, 0] - w[b, j, 0]) ** 2 / 8))


def leading_right_vectors(x, n, signs_like):
    """NumPy SVD of [B, HW, D] feature maps; signs matched to `signs_like`
    (singular vectors are defined up to sign, LAPACK builds may differ)."""
    b, h, w, d = x.shape
    _, s, vt = np.linalg.svd(x.reshape(b, h * w, d), full_matrices=False)
    v = np.swapaxes(vt, 1, 2)[:, :, :n]
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    v = v * np.sign(np.sum(v * signs_like, axis=1, keepdims=True))
    s = s[:, :n] / np.linalg.norm(s[:, :n], axis=1, keepdims=True)
    return s, v


@pytest.mark.parametrize("dist_type", ["SVD", "EID"])
def test_kd_svd(dist_type):
    s = [RNG.randn(2, 6, 6, 4), RNG.randn(2, 3, 3, 5), RNG.randn(2, 2, 2, 6)]
    t = [RNG.randn(*x.shape) for x in s]
    decompose = {"SVD": shared.svd_ops.svd, "EID": shared.svd_ops.svd_eid}[dist_type]
    expected, previous = 0.0, None
    for sfm, tfm in zip(s, t):
        v_t_tf = decompose(tf.constant(tfm), 1)[2].numpy()
        v_s_tf = decompose(tf.constant(sfm), 4)[2].numpy()
        sigma_t, v_t = leading_right_vectors(tfm, 1, v_t_tf)
        _, v_s = leading_right_vectors(sfm, 4, v_s_tf)
        cosine = np.einsum("bdi,bdj->bij", v_s, v_t)                     # [B, 4, 1]
        best = np.argmax(np.abs(cosine[:, :, 0]), 1)
        v_s = np.stack([v_s[b, :, [best[b]]].T * np.sign(cosine[b, best[b], 0])
                        for b in range(2)])
        v_t, v_s = v_t * sigma_t[:, None], v_s * sigma_t[:, None]
        if previous is not None:
            v_sb, v_tb = previous
            s_rbf = np.exp(-(v_s[:, :, None] - v_sb[:, None]) ** 2 / 8)
            t_rbf = np.exp(-(v_t[:, :, None] - v_tb[:, None]) ** 2 / 8)
            expected += np.sum((s_rbf - t_rbf) ** 2)
        previous = (v_s, v_t)
    got = shared.kd_svd([tf.constant(x) for x in s], [tf.constant(x) for x in t], dist_type)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_kd_svd_gradient_reaches_the_student_only():
    s = [tf.Variable(RNG.randn(2, 6, 6, 4)), tf.Variable(RNG.randn(2, 3, 3, 5))]
    t = [tf.Variable(RNG.randn(2, 6, 6, 4)), tf.Variable(RNG.randn(2, 3, 3, 5))]
    with tf.GradientTape() as tape:
        loss = shared.kd_svd(s, t)
    grads = tape.gradient(loss, s + t)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads[:2])
