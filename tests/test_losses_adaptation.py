"""Knowledge adaptation's losses and modules against NumPy written from the
formulas (He et al., CVPR 2019; choices documented in tf_kd/losses/adaptation.py)."""

import numpy as np
import pytest
import tensorflow as tf

from reference import batch_norm_train, l2_normalize, relu
from tf_kd import layers
from tf_kd.losses import adaptation

RNG = np.random.RandomState(0)


def np_affinity(feature):
    """Cosine similarity of every pair of positions, divided by their number."""
    b, h, w, c = feature.shape
    vectors = feature.reshape(b, h * w, c)
    norms = np.sqrt(np.maximum((vectors ** 2).sum(-1), 1e-12))
    cosine = np.einsum("bic,bjc->bij", vectors, vectors) / norms[:, :, None] / norms[:, None]
    return cosine / (h * w)


def np_affinity_loss(student, teacher):
    difference = np_affinity(student) - np_affinity(teacher)
    return np.mean([np.linalg.norm(d) for d in difference])     # Frobenius per image


def np_adaptation_loss(code, adapted):
    """Mean over positions j of || code_j/||code_j||_2 - adapted_j/||adapted_j||_2 ||_1 / C."""
    total, count = 0.0, 0
    for b in range(code.shape[0]):
        for i in range(code.shape[1]):
            for j in range(code.shape[2]):
                u, v = code[b, i, j], adapted[b, i, j]
                u = u / max(np.linalg.norm(u), 1e-6)
                v = v / max(np.linalg.norm(v), 1e-6)
                total += np.abs(u - v).sum()
                count += 1
    return total / count / code.shape[-1]


def test_affinity_matrix_is_the_spatially_normalised_cosine():
    feature = RNG.randn(2, 3, 4, 5)
    got = adaptation.affinity(tf.constant(feature)).numpy()
    assert got.shape == (2, 12, 12)
    np.testing.assert_allclose(got, np_affinity(feature), rtol=1e-10)
    np.testing.assert_allclose(np.diagonal(got, axis1=1, axis2=2), 1 / 12)


def test_affinity_loss_equal_sizes():
    student, teacher = RNG.randn(3, 4, 4, 6), relu(RNG.randn(3, 4, 4, 10))
    got = adaptation.affinity_loss(tf.constant(student), tf.constant(teacher))
    assert float(got) == pytest.approx(np_affinity_loss(student, teacher), rel=1e-10)
    # cosine similarity: invariant to a positive scale per position
    scale = np.exp(RNG.randn(3, 4, 4, 1))
    assert float(adaptation.affinity_loss(tf.constant(student * scale), tf.constant(teacher))
                 ) == pytest.approx(float(got), rel=1e-8)
    assert float(adaptation.affinity_loss(tf.constant(teacher), tf.constant(teacher))) < 1e-5


def test_affinity_loss_resizes_the_teacher_to_the_student():
    student = RNG.randn(2, 4, 4, 6).astype("float32")
    teacher = RNG.randn(2, 8, 8, 6).astype("float32")
    # bilinear halving with half-pixel centres averages 2x2 blocks
    pooled = teacher.reshape(2, 4, 2, 4, 2, 6).mean((2, 4))
    got = adaptation.affinity_loss(tf.constant(student), tf.constant(teacher))
    assert float(got) == pytest.approx(np_affinity_loss(student, pooled), rel=1e-5)


def test_affinity_loss_gradient_is_finite_when_equal():
    feature = tf.Variable(RNG.randn(2, 3, 3, 4))
    with tf.GradientTape() as tape:
        loss = adaptation.affinity_loss(feature, tf.constant(feature.numpy()))
    assert np.all(np.isfinite(tape.gradient(loss, feature).numpy()))


def test_adaptation_loss_per_position_q2_normalised_p1_distance():
    code = relu(RNG.randn(2, 3, 3, 5))
    code[0, 1, 1] = 0                                   # a dead code vector
    adapted = relu(RNG.randn(2, 3, 3, 5))
    got = adaptation.adaptation_loss(tf.constant(code), tf.constant(adapted))
    assert float(got) == pytest.approx(np_adaptation_loss(code, adapted), rel=1e-8)
    # not the l2 distance: p and q differ
    l2 = np.mean(np.linalg.norm(l2_normalize(code, -1) - l2_normalize(adapted, -1), axis=-1))
    assert abs(float(got) - l2 / 5) > 1e-3


def test_adaptation_loss_upsamples_the_code_to_the_adapter():
    code = (relu(RNG.randn(2, 1, 1, 4)) + 0.1).astype("float32")
    adapted = relu(RNG.randn(2, 4, 4, 4)).astype("float32")
    got = adaptation.adaptation_loss(tf.constant(code), tf.constant(adapted))
    # a 1x1 map upsampled bilinearly is constant
    expected = np_adaptation_loss(np.broadcast_to(code, adapted.shape), adapted)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_auto_encoder_loss():
    feature, reconstruction = RNG.randn(2, 3, 4, 4, 5)
    code = RNG.randn(3, 2, 2, 5)
    expected = (np.mean((feature - reconstruction) ** 2)
                + 0.5 * np.mean([np.abs(c).sum() for c in code]))
    got = adaptation.auto_encoder_loss(tf.constant(feature), tf.constant(reconstruction),
                                       tf.constant(code), alpha=0.5)
    assert float(got) == pytest.approx(expected, rel=1e-10)
    assert adaptation.ALPHA == 1e-7 and adaptation.BETA == 50 and adaptation.GAMMA == 1


def test_auto_encoder_shapes_arguments_and_decay():
    auto_encoder = adaptation.AutoEncoder()
    feature = tf.constant(relu(RNG.randn(2, 16, 16, 8)).astype("float32"))
    reconstruction = auto_encoder(feature)
    code = auto_encoder.encode(feature)
    assert reconstruction.shape == feature.shape and code.shape == (2, 2, 2, 8)
    assert np.all(code.numpy() >= 0)                               # ends in a ReLU
    np.testing.assert_allclose(reconstruction, auto_encoder.decode(code), rtol=1e-6)
    convs, deconvs = auto_encoder.encoder, auto_encoder.decoder
    assert [c.strides for c in convs + deconvs] == [(2, 2)] * 6
    assert [type(d).__name__ for d in deconvs] == ["Conv2DTranspose"] * 3
    assert deconvs[2].activation.__name__ == "linear"
    for layer in convs + deconvs:
        assert layer.use_bias and layer.filters == 8 and layer.kernel_size == (3, 3)
        assert isinstance(layer.kernel_initializer, tf.keras.initializers.TruncatedNormal)
    kernels = sum(np.sum(l.kernel.numpy().astype("float64") ** 2) for l in convs + deconvs)
    assert float(sum(auto_encoder.losses)) == pytest.approx(1e-4 * kernels / 2, rel=1e-5)


def test_feature_adapter_is_conv_bn_relu_in_training_mode():
    adapter = adaptation.FeatureAdapter(6)
    feature = RNG.randn(4, 5, 5, 3).astype("float32")
    got = adapter(tf.constant(feature)).numpy()
    assert got.shape == (4, 5, 5, 6)
    conv = tf.nn.conv2d(feature, adapter.conv.kernel, 1, "SAME").numpy()     # stride 1, pad 1
    assert adapter.conv.kernel.shape == (3, 3, 3, 6) and not adapter.conv.use_bias
    expected = relu(batch_norm_train(conv.astype("float64"), adapter.bn.gamma.numpy(),
                                     adapter.bn.beta.numpy()))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert adapter.bn.momentum == 0.9 and adapter.bn.epsilon == 1.001e-5
    squares = sum(np.sum(w.numpy().astype("float64") ** 2) for w in
                  [adapter.conv.kernel, adapter.bn.gamma, adapter.bn.beta])
    assert float(sum(adapter.losses)) == pytest.approx(layers.WEIGHT_DECAY * squares / 2,
                                                       rel=1e-5)
