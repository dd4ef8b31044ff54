"""DFKD's soft-target sampling and synthesis objective against NumPy, written
from the paper's formulas (Wang, AAAI 2021)."""

import numpy as np
import pytest
import tensorflow as tf

from reference import log_softmax, softmax
from tf_kd.losses import data_free

RNG = np.random.RandomState(11)


def cosine_reference(kernel):
    """R_ij = w_i . w_j / (||w_i|| ||w_j||), w_i the i-th column, by loops."""
    k = kernel.shape[1]
    return np.array([[kernel[:, i] @ kernel[:, j]
                      / (np.linalg.norm(kernel[:, i]) * np.linalg.norm(kernel[:, j]))
                      for j in range(k)] for i in range(k)])


def test_correlation_matrix_is_the_cosine_of_the_class_weights():
    kernel = RNG.randn(7, 5)
    got = data_free.correlation_matrix(kernel).numpy()
    np.testing.assert_allclose(got, cosine_reference(kernel), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.diag(got), 1, rtol=1e-6)


@pytest.mark.parametrize("features", [8, 3])   # 3 < 6 classes: R is singular
def test_sampled_logits_have_covariance_d_r_d_and_zero_mean(features):
    sigma, count = 2.5, 200_000
    correlation = cosine_reference(RNG.randn(features, 6))
    logits = data_free.sample_logits(correlation, sigma, count, [3, 0]).numpy()
    assert logits.shape == (count, 6) and np.all(np.isfinite(logits))
    d = np.diag(np.full(6, sigma))
    tolerance = 5 * sigma ** 2 * np.sqrt(2 / count)      # five standard errors
    np.testing.assert_allclose(np.cov(logits, rowvar=False), d @ correlation @ d,
                               atol=tolerance)
    np.testing.assert_allclose(logits.mean(0), 0, atol=5 * sigma / np.sqrt(count))
    assert np.linalg.matrix_rank(logits[:50], tol=1e-3) == min(features, 6)


def test_an_indefinite_correlation_is_clipped_to_its_nearest_semidefinite_matrix():
    vectors = np.linalg.qr(RNG.randn(4, 4))[0]
    correlation = vectors @ np.diag([2.0, 1.5, 0.5, -0.3]) @ vectors.T
    logits = data_free.sample_logits(correlation, 1.0, 200_000, [5, 0]).numpy()
    clipped = vectors @ np.diag([2.0, 1.5, 0.5, 0.0]) @ vectors.T
    np.testing.assert_allclose(np.cov(logits, rowvar=False), clipped, atol=0.03)


def test_sampling_is_seeded():
    correlation = cosine_reference(RNG.randn(5, 4))
    first = data_free.sample_logits(correlation, 1.0, 10, [1, 0]).numpy()
    np.testing.assert_array_equal(
        first, data_free.sample_logits(correlation, 1.0, 10, [1, 0]).numpy())
    assert not np.allclose(first, data_free.sample_logits(correlation, 1.0, 10, [2, 0]))


def test_soft_targets_are_softmax_of_s_over_tau():
    s = RNG.randn(4, 10) * 5
    np.testing.assert_allclose(data_free.soft_targets(tf.constant(s), 20.0).numpy(),
                               softmax(s / 20), rtol=1e-10)


def test_soft_target_loss_is_kl_of_target_to_teacher():
    s, teacher = RNG.randn(3, 6) * 4, RNG.randn(3, 6) * 4
    y = softmax(s / 20)
    expected = np.mean(np.sum(y * (np.log(y) - log_softmax(teacher / 20)), -1))
    got = data_free.soft_target_loss(tf.constant(y), tf.constant(teacher), 20.0)
    assert float(got) == pytest.approx(expected, rel=1e-8)
    # zero once the teacher's logits are the sampled ones up to a shift
    matched = data_free.soft_target_loss(tf.constant(y), tf.constant(s + 3.0), 20.0)
    assert float(matched) == pytest.approx(0, abs=1e-12)


def test_activation_loss_is_minus_the_mean_l1_norm():
    a = RNG.randn(3, 4, 4, 2)
    expected = -np.mean([np.sum(np.abs(a[i])) for i in range(3)])
    assert float(data_free.activation_loss(tf.constant(a))) == pytest.approx(expected)


def test_synthesis_loss_adds_the_weighted_activation_term():
    y = softmax(RNG.randn(2, 5))
    teacher, a = RNG.randn(2, 5), RNG.randn(2, 3, 3, 4)
    kl = np.mean(np.sum(y * (np.log(y) - log_softmax(teacher / 4)), -1))
    la = -np.mean(np.abs(a).reshape(2, -1).sum(-1))
    got = data_free.synthesis_loss(tf.constant(y), tf.constant(teacher), tf.constant(a),
                                   4.0, 0.01)
    assert float(got) == pytest.approx(kl + 0.01 * la, rel=1e-8)
