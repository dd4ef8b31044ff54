import numpy as np
import pytest
import tensorflow as tf

from tf_kd.losses import selectivity

RNG = np.random.RandomState(5)


def maps(feature):
    b, h, w, c = feature.shape
    m = feature.reshape(b, h * w, c).transpose(0, 2, 1)
    return m / np.linalg.norm(m, axis=-1, keepdims=True)


def mmd2_reference(t, s, kernel):
    """Squared MMD from the paper's formula, one example, loops over pairs."""
    if kernel == "linear":
        k = np.dot
    elif kernel == "poly":
        def k(a, b):
            return np.dot(a, b) ** 2                      # d = 2, c = 0
    else:
        sigma2 = np.mean([np.sum((a - b) ** 2) for a in t for b in s])

        def k(a, b):
            return np.exp(-np.sum((a - b) ** 2) / (2 * sigma2))
    tt = np.mean([k(a, b) for a in t for b in t])
    ss = np.mean([k(a, b) for a in s for b in s])
    ts = np.mean([k(a, b) for a in t for b in s])
    return tt + ss - 2 * ts


@pytest.mark.parametrize("kernel", ["linear", "poly", "gaussian"])
def test_nst_against_the_formula(kernel):
    student = [RNG.randn(2, 4, 4, 3), RNG.randn(2, 2, 2, 5)]
    teacher = [RNG.randn(2, 4, 4, 6), RNG.randn(2, 2, 2, 4)]
    expected = sum(np.mean([mmd2_reference(maps(t)[b], maps(s)[b], kernel) for b in range(2)])
                   for s, t in zip(student, teacher))
    got = selectivity.nst([tf.constant(x) for x in student], [tf.constant(x) for x in teacher],
                          kernel)
    assert float(got) == pytest.approx(expected, rel=1e-8)


def test_mmd_is_zero_for_identical_maps_and_gradients_flow():
    x = tf.Variable(RNG.randn(2, 4, 4, 3))
    with tf.GradientTape() as tape:
        same = selectivity.nst([x], [tf.identity(x)], "gaussian")
        other = selectivity.nst([x], [tf.constant(RNG.randn(2, 4, 4, 3))], "poly")
    assert float(same) == pytest.approx(0, abs=1e-12)
    assert tape.gradient(other, x) is not None


def test_unknown_kernel():
    with pytest.raises(ValueError, match="linear, poly, gaussian"):
        selectivity.mmd2(tf.ones([1, 2, 3]), tf.ones([1, 2, 3]), "cosine")
