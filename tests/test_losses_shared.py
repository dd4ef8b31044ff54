"""FSP and KD-SVD against NumPy references written from the TF1 formulas."""

import numpy as np
import pytest
import tensorflow as tf

from tf_kd import svd
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


def stage_feats(widths=(3, 5, 4, 6), sizes=(8, 8, 4, 2), batch=2):
    return [RNG.randn(batch, s, s, w) for s, w in zip(sizes, widths)]


def fsp_reference(s, t, weight):
    return weight * sum(
        np.mean(np.sum((gram(t[i], t[i + 1]) - gram(s[i], s[i + 1])) ** 2, (1, 2)) / 2)
        for i in range(len(s) - 1))


def test_fsp():
    s, t = stage_feats(), stage_feats()           # one pair of equal size, two pooled
    got = shared.fsp([tf.constant(x) for x in s], [tf.constant(x) for x in t], weight=2e-3)
    assert float(got) == pytest.approx(fsp_reference(s, t, 2e-3), rel=1e-10)


def test_fsp_gradient_reaches_the_student_only():
    s = [tf.Variable(x) for x in stage_feats()]
    t = [tf.Variable(x) for x in stage_feats()]
    with tf.GradientTape() as tape:
        loss = shared.fsp(s, t)
    grads = tape.gradient(loss, s + t)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads[:4])
    assert all(g is None for g in grads[4:])


def test_rbf_graph():
    v, w = RNG.randn(2, 4, 2), RNG.randn(2, 3, 2)
    got = shared.rbf_graph(tf.constant(v), tf.constant(w)).numpy()
    assert got.shape == (2, 4, 3, 2)
    for b, i, j, k in np.ndindex(*got.shape):
        assert got[b, i, j, k] == pytest.approx(np.exp(-(v[b, i, k] - w[b, j, k]) ** 2 / 8))


def leading(x, n):
    """NumPy: the `n` leading normalised singular values and right vectors."""
    _, s, vt = np.linalg.svd(x.reshape(len(x), -1, x.shape[-1]), full_matrices=False)
    s = s[:, :n]
    return s / np.linalg.norm(s, axis=1, keepdims=True), np.swapaxes(vt, 1, 2)[:, :, :n]


def kd_svd_reference(student, teacher, teacher_signs, k):
    """KD-SVD from NumPy's SVD. A singular vector's sign is arbitrary and the
    RBF between stages depends on it, so the teacher's vectors take the signs
    `teacher_signs[stage]` `[B, 1, k]` (the student's follow by alignment)."""
    loss, previous = 0.0, None
    for sfm, tfm, signs in zip(student, teacher, teacher_signs):
        sigma_t, v_t = leading(tfm, k)
        v_t = v_t * signs
        _, v_s = leading(sfm, k + 3)
        aligned = np.zeros_like(v_t)
        for b, j in np.ndindex(len(v_t), k):
            cosine = v_s[b].T @ v_t[b, :, j]
            best = np.argmax(np.abs(cosine))
            aligned[b, :, j] = v_s[b, :, best] * np.sign(cosine[best])
        v_t, v_s = v_t * sigma_t[:, None], aligned * sigma_t[:, None]
        if previous is not None:
            v_sb, v_tb = previous
            s_rbf = np.exp(-(v_s[:, :, None] - v_sb[:, None]) ** 2 / 8)
            t_rbf = np.exp(-(v_t[:, :, None] - v_tb[:, None]) ** 2 / 8)
            loss += np.sum((s_rbf - t_rbf) ** 2)
        previous = v_s, v_t
    return loss


SHAPES = [(3, 6, 6, 4), (3, 3, 3, 5), (3, 2, 2, 6)]     # HW > D, HW > D, HW < D


@pytest.mark.parametrize("dist_type", ["SVD", "EID"])
@pytest.mark.parametrize("k", [1, 2])
def test_kd_svd(dist_type, k):
    s = [RNG.randn(*shape) for shape in SHAPES]
    t = [RNG.randn(*shape) for shape in SHAPES]
    decompose = {"SVD": svd.svd, "EID": svd.svd_eid}[dist_type]
    signs = []
    for tfm in t:
        v_tf = decompose(tf.constant(tfm), k)[2].numpy()
        signs.append(np.sign(np.sum(v_tf * leading(tfm, k)[1], 1, keepdims=True)))
    expected = kd_svd_reference(s, t, signs, k)
    got = shared.kd_svd([tf.constant(x) for x in s], [tf.constant(x) for x in t],
                        dist_type, num_teacher=k)
    assert float(got) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("dist_type", ["SVD", "EID"])
def test_kd_svd_gradient_reaches_the_student_only(dist_type):
    s = [tf.Variable(RNG.randn(*shape)) for shape in SHAPES]
    t = [tf.Variable(RNG.randn(*shape)) for shape in SHAPES]
    with tf.GradientTape() as tape:
        loss = shared.kd_svd(s, t, dist_type)
    grads = tape.gradient(loss, s + t)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads[:3])
    assert any(np.abs(g).max() > 0 for g in grads[:3])
    # the teacher's RBF graph is gradient-stopped; what reaches its singular
    # values (which scale the student's vectors) is dropped by TF1's gradient
    assert all(g is None or not np.any(g) for g in grads[3:])


def test_losses_in_tf_function_with_unknown_batch():
    shapes = [(3, 8, 8, 4), (3, 4, 4, 6), (3, 2, 2, 8)]
    s = [tf.constant(RNG.randn(*shape), tf.float32) for shape in shapes]
    t = [tf.constant(RNG.randn(*shape), tf.float32) for shape in shapes]
    spec = [tf.TensorSpec([None, *shape[1:]], tf.float32) for shape in shapes]

    def losses(s, t):
        with tf.GradientTape() as tape:
            tape.watch(s)
            fsp = shared.fsp(s, t)
            kd = shared.kd_svd(s, t, "SVD") + shared.kd_svd(s, t, "EID")
            total = fsp + kd
        return fsp, kd, tape.gradient(total, s)

    traced = tf.function(losses, input_signature=[spec, spec], jit_compile=False)
    fsp, kd, grads = traced(s, t)
    fsp_e, kd_e, _ = losses(s, t)
    assert float(fsp) == pytest.approx(float(fsp_e), rel=1e-5)
    assert float(kd) == pytest.approx(float(kd_e), rel=1e-4)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
