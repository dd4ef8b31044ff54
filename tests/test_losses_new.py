"""KD, DKD, DIST, logit standardisation, PKT, SP and CC against NumPy
references written from the reference implementations' formulas
(RepDistiller, mdistiller, image_classification_sota,
logit-standardization-KD): values, gradients against finite differences of
the NumPy references, and each method's own identity or invariance."""

import numpy as np
import pytest
import tensorflow as tf

from reference import log_softmax, numeric_gradient, softmax
from tf_kd.losses import relation, response

RNG = np.random.RandomState(21)


def check_gradient(loss, reference, student, *rest):
    """The autodiff gradient of `loss(student, *rest)` in the student's
    input equals the finite differences of `reference`."""
    x = tf.constant(student)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss(x, *[tf.constant(r) if isinstance(r, np.ndarray) else r for r in rest])
    expected = numeric_gradient(lambda s: reference(s, *rest), student)
    np.testing.assert_allclose(tape.gradient(value, x).numpy(), expected, rtol=1e-5, atol=1e-8)


# -- References written from the PyTorch code

def np_standardize(z):
    return (z - z.mean(-1, keepdims=True)) / (1e-7 + z.std(-1, ddof=1, keepdims=True))


def kl_rows(p_logits, q_logits):
    """KL(softmax(p) || softmax(q)) per row."""
    return np.sum(softmax(p_logits) * (log_softmax(p_logits) - log_softmax(q_logits)), -1)


def np_kd(s, t, temperature, standardized=False):
    if standardized:
        s, t = np_standardize(s), np_standardize(t)
    return temperature ** 2 * kl_rows(t / temperature, s / temperature).mean()


def np_dkd_parts(s, t, labels, temperature, standardized=False, per_example=False):
    """mdistiller's `dkd_loss`: masks, `cat_mask`, log of the binary
    probabilities, the non-target KL on `z / T - 1000 gt`."""
    if standardized:
        s, t = np_standardize(s), np_standardize(t)
    gt = np.eye(s.shape[1])[labels]
    p_s, p_t = softmax(s / temperature), softmax(t / temperature)
    b_s = np.stack([(p_s * gt).sum(1), (p_s * (1 - gt)).sum(1)], 1)
    b_t = np.stack([(p_t * gt).sum(1), (p_t * (1 - gt)).sum(1)], 1)
    tckd = np.sum(b_t * (np.log(b_t) - np.log(b_s)), 1)
    nckd = kl_rows(t / temperature - 1000 * gt, s / temperature - 1000 * gt)
    if not per_example:
        tckd, nckd = tckd.mean(), nckd.mean()
    return temperature ** 2 * tckd, temperature ** 2 * nckd


def np_dkd(s, t, labels, alpha, beta, temperature, standardized=False):
    tckd, nckd = np_dkd_parts(s, t, labels, temperature, standardized)
    return alpha * tckd + beta * nckd


def np_pearson(a, b, eps=1e-8):
    """Row-wise, as `pearson_correlation` of dist_kd.py."""
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + eps)


def np_dist(s, t, beta, gamma, tau):
    y_s, y_t = softmax(s / tau), softmax(t / tau)
    inter = 1 - np_pearson(y_s, y_t).mean()
    intra = 1 - np_pearson(y_s.T, y_t.T).mean()
    return tau ** 2 * (beta * inter + gamma * intra)


def np_pkt(s, t, eps=1e-7):
    def probabilities(x):
        x = x / (np.sqrt((x ** 2).sum(1, keepdims=True)) + eps)
        similarity = (x @ x.T + 1) / 2
        return similarity / similarity.sum(1, keepdims=True)
    p_s, p_t = probabilities(s), probabilities(t)
    return np.mean(p_t * np.log((p_t + eps) / (p_s + eps)))


def np_sp(s, t):
    def gram(x):
        x = x.reshape(len(x), -1)
        g = x @ x.T
        return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return np.sum((gram(t) - gram(s)) ** 2) / len(s) ** 2


def np_cc(s, t):
    delta = np.abs(s - t)
    return np.mean((delta[:-1] * delta[1:]).sum(1))


# -- KD and logit standardisation

def test_standardize_is_zero_mean_unit_sample_std():
    z = RNG.randn(4, 7) * 5 + 3
    got = response.standardize(tf.constant(z)).numpy()
    np.testing.assert_allclose(got, np_standardize(z), rtol=1e-10)
    np.testing.assert_allclose(got.std(-1, ddof=1), 1, rtol=1e-6)   # PyTorch's std: ddof 1


@pytest.mark.parametrize("temperature, standardized", [(4.0, False), (1.0, False), (2.0, True)])
def test_kd(temperature, standardized):
    s, t = RNG.randn(2, 6, 10) * 3
    got = response.kd(tf.constant(s), tf.constant(t), temperature, standardized)
    assert float(got) == pytest.approx(np_kd(s, t, temperature, standardized), rel=1e-10)
    assert float(got) == pytest.approx(                       # T^2 times TF1's Soft_logits
        temperature ** 2 * float(response.soft_logits(
            *(response.standardize(tf.constant(x)) if standardized else tf.constant(x)
              for x in (s, t)), temperature)), rel=1e-10)
    check_gradient(lambda x, y: response.kd(x, y, temperature, standardized),
                   lambda x, y: np_kd(x, y, temperature, standardized), s, t)


@pytest.mark.parametrize("loss", ["kd", "dkd"])
def test_logit_standardization_ignores_shift_and_scale(loss):
    """Per example, `a z + b` (a > 0) gives the loss of `z` with
    standardisation, and another loss without."""
    s, t = RNG.randn(2, 5, 8) * 2
    labels = RNG.randint(0, 8, 5)
    a, b = RNG.uniform(0.3, 4, (2, 5, 1)), RNG.randn(2, 5, 1) * 10

    def value(s, t, standardized):
        if loss == "kd":
            return float(response.kd(tf.constant(s), tf.constant(t), 2.0, standardized))
        return float(response.dkd(tf.constant(s), tf.constant(t), labels, 9.0, 72.0, 2.0,
                                  standardized))

    moved = (a[0] * s + b[0], a[1] * t + b[1])
    assert value(*moved, True) == pytest.approx(value(s, t, True), rel=1e-6)
    assert value(*moved, False) != pytest.approx(value(s, t, False), rel=1e-2)


# -- DKD

@pytest.mark.parametrize("temperature, standardized", [(4.0, False), (1.0, False), (2.0, True)])
def test_dkd(temperature, standardized):
    s, t = RNG.randn(2, 6, 10) * 3
    labels = RNG.randint(0, 10, 6)
    tckd, nckd = response.dkd_parts(tf.constant(s), tf.constant(t), labels, temperature,
                                    standardized)
    expected = np_dkd_parts(s, t, labels, temperature, standardized)
    np.testing.assert_allclose([float(tckd), float(nckd)], expected, rtol=1e-10)
    got = response.dkd(tf.constant(s), tf.constant(t), labels, 1.0, 8.0, temperature, standardized)
    assert float(got) == pytest.approx(
        np_dkd(s, t, labels, 1.0, 8.0, temperature, standardized), rel=1e-10)
    check_gradient(lambda x, y: response.dkd(x, y, labels, 1.0, 8.0, temperature, standardized),
                   lambda x, y: np_dkd(x, y, labels, 1.0, 8.0, temperature, standardized), s, t)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_decomposes_kd(temperature):
    """Per example, `KD = TCKD + (1 - p_t[target]) NCKD` with `p_t` the
    teacher's target-class probability at the same temperature (all three
    times T^2), the decomposition DKD starts from."""
    s, t = RNG.randn(2, 3, 5) * 2
    labels = np.array([0, 3, 4])
    p_target = softmax(t / temperature)[np.arange(3), labels]
    for i in range(3):
        kd = float(response.kd(tf.constant(s[i:i + 1]), tf.constant(t[i:i + 1]), temperature))
        tckd, nckd = response.dkd_parts(tf.constant(s[i:i + 1]), tf.constant(t[i:i + 1]),
                                        labels[i:i + 1], temperature)
        assert kd == pytest.approx(float(tckd) + (1 - p_target[i]) * float(nckd), rel=1e-9)
    # the reference's own per-example terms satisfy it too
    tckd, nckd = np_dkd_parts(s, t, labels, temperature, per_example=True)
    kd = temperature ** 2 * kl_rows(t / temperature, s / temperature)
    np.testing.assert_allclose(kd, tckd + (1 - p_target) * nckd, rtol=1e-9)


def test_dkd_is_finite_where_the_target_probability_underflows():
    """The reference takes the log of a probability that rounds to 0 in
    float32; here the binary log-probabilities come from log-sum-exps."""
    s = tf.constant([[-200.0, 0.0, 1.0]])
    t = tf.constant([[3.0, 0.0, 1.0]])
    with tf.GradientTape() as tape:
        tape.watch(s)
        loss = response.dkd(s, t, [0], temperature=1.0)
    expected = np_dkd(s.numpy().astype("float64"), t.numpy().astype("float64"), [0], 1, 8, 1)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert np.all(np.isfinite(tape.gradient(loss, s)))


# -- DIST

@pytest.mark.parametrize("beta, gamma, tau", [(1.0, 1.0, 4.0), (2.0, 0.5, 1.0)])
def test_dist(beta, gamma, tau):
    s, t = RNG.randn(2, 6, 10) * 3
    got = response.dist(tf.constant(s), tf.constant(t), beta, gamma, tau)
    assert float(got) == pytest.approx(np_dist(s, t, beta, gamma, tau), rel=1e-10)
    check_gradient(lambda x, y: response.dist(x, y, beta, gamma, tau),
                   lambda x, y: np_dist(x, y, beta, gamma, tau), s, t)


def test_dist_of_dense_predictions_counts_pixels_as_examples():
    s, t = RNG.randn(2, 2, 3, 3, 5)
    got = response.dist(tf.constant(s), tf.constant(t))
    assert float(got) == pytest.approx(np_dist(s.reshape(-1, 5), t.reshape(-1, 5), 1, 1, 4),
                                       rel=1e-10)


@pytest.mark.parametrize("axis", [0, 1])
def test_pearson_ignores_a_positive_affine_change(axis):
    """DIST's relations match the probabilities up to a positive affine
    change `a y + b` (per example for the inter-class relation, per class
    for the intra-class one); a negative `a` flips the sign."""
    y_s, y_t = softmax(RNG.randn(2, 6, 10), -1)
    shape = (6, 1) if axis == 1 else (1, 10)
    a, b = RNG.uniform(0.2, 5, shape), RNG.randn(*shape)
    plain = response.pearson(tf.constant(y_s), tf.constant(y_t), axis).numpy()
    moved = response.pearson(tf.constant(a * y_s + b), tf.constant(y_t), axis).numpy()
    np.testing.assert_allclose(moved, plain, rtol=1e-5)
    flipped = response.pearson(tf.constant(-a * y_s + b), tf.constant(y_t), axis).numpy()
    np.testing.assert_allclose(flipped, -plain, rtol=1e-5)
    np.testing.assert_allclose(plain, np_pearson(*((y_s, y_t) if axis == 1 else (y_s.T, y_t.T))),
                               rtol=1e-10)


def test_dist_vanishes_for_the_teachers_logits_and_a_per_example_shift():
    """Zero up to the `eps` in the Pearson correlation's denominator."""
    t = RNG.randn(8, 10) * 3
    shifted = t + RNG.randn(8, 1) * 5                     # the same softmax
    for s in (t, shifted):
        got = float(response.dist(tf.constant(s), tf.constant(t)))
        assert got == pytest.approx(np_dist(s, t, 1.0, 1.0, 4.0), rel=1e-6) and got < 1e-4
    assert float(response.dist(tf.constant(RNG.randn(8, 10) * 3), tf.constant(t))) > 1


# -- PKT, SP, CC

def test_pkt():
    s, t = RNG.randn(6, 5), RNG.randn(6, 9)              # the widths may differ
    assert float(relation.pkt(tf.constant(s), tf.constant(t))) == pytest.approx(
        np_pkt(s, t), rel=1e-10)
    check_gradient(relation.pkt, np_pkt, s, t)
    assert float(relation.pkt(tf.constant(t), tf.constant(t))) == pytest.approx(0, abs=1e-12)


def test_pkt_of_a_zero_vector_has_finite_gradients():
    s = RNG.randn(4, 5)
    s[2] = 0
    s = tf.constant(s)
    with tf.GradientTape() as tape:
        tape.watch(s)
        loss = relation.pkt(s, tf.constant(RNG.randn(4, 3)))
    assert np.all(np.isfinite(tape.gradient(loss, s)))


def test_similarity_preserving():
    s, t = relu_features((6, 4, 4, 3)), relu_features((6, 2, 2, 8))   # any widths and sizes
    got = relation.similarity_preserving(tf.constant(s), tf.constant(t))
    assert float(got) == pytest.approx(np_sp(s, t), rel=1e-10)
    check_gradient(relation.similarity_preserving, np_sp, s, t)
    # the channel order of the flattening (NHWC here, NCHW in PyTorch) does not matter
    nchw = np.transpose(s, (0, 3, 1, 2))
    assert float(got) == pytest.approx(np_sp(nchw, t), rel=1e-10)


def relu_features(shape):
    return np.maximum(RNG.randn(*shape), 0)


def test_correlation_congruence():
    s, t = RNG.randn(2, 7, 6)
    got = relation.correlation_congruence(tf.constant(s), tf.constant(t))
    assert float(got) == pytest.approx(np_cc(s, t), rel=1e-10)
    check_gradient(relation.correlation_congruence, np_cc, s, t)


def test_linear_embed_is_pytorch_linear():
    embed = relation.LinearEmbed(128)
    embed.build((None, 16))
    kernel, bias = embed.linear.kernel.numpy(), embed.linear.bias.numpy()
    assert kernel.shape == (16, 128) and bias.shape == (128,)
    assert embed.count_params() == 16 * 128 + 128
    bound = 1 / np.sqrt(16)
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    assert np.abs(bias).max() > bound / 2                    # not zero-initialised
    x = RNG.randn(3, 16).astype("float32")
    np.testing.assert_allclose(embed(x), x @ kernel + bias, rtol=1e-5, atol=1e-6)
    squares = np.sum(kernel.astype("float64") ** 2) + np.sum(bias.astype("float64") ** 2)
    assert float(sum(embed.losses)) == pytest.approx(5e-4 * squares / 2, rel=1e-5)
