import numpy as np
import pytest
import tensorflow as tf

from tf_kd.distillers import base


def test_clipped_sum_matches_tf1_formula():
    rng = np.random.RandomState(0)
    for scale in [0.01, 1.0, 100.0]:
        c, w, d = rng.randn(3, 4, 5)
        d = d * scale
        factor = 0.7
        bound = np.linalg.norm(c) * factor
        d_clipped = d * min(1.0, bound / np.linalg.norm(d))
        got = base.clipped_sum(tf.constant(c), tf.constant(w), tf.constant(d), factor)
        np.testing.assert_allclose(got, c + w + d_clipped, rtol=1e-10)
        assert np.linalg.norm(got - c - w) <= bound * (1 + 1e-9)


def test_clipped_sum_without_decay_or_distillation():
    c = tf.constant([3.0, 4.0])
    np.testing.assert_allclose(base.clipped_sum(c, None, None, 1.0), c)
    np.testing.assert_allclose(base.clipped_sum(c, None, tf.constant([30.0, 40.0]), 0.5),
                               [3 + 1.5, 4 + 2.0], rtol=1e-6)


@pytest.mark.parametrize("x", [-3, 0, 1, 5, 40])
def test_sigmoid_matches_tf1(x):
    s = 1 / (1 + np.exp(-x))
    expected = 1.0 if s > 1 - 1e-8 else s
    assert float(base.sigmoid(x)) == pytest.approx(expected, rel=1e-6)


def test_class_loss_is_softmax_cross_entropy():
    rng = np.random.RandomState(1)
    logits = rng.randn(6, 5)
    labels = rng.randint(0, 5, 6)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -log_p[np.arange(6), labels].mean()
    assert float(base.class_loss(labels, tf.constant(logits))) == pytest.approx(expected)
