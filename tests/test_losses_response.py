import numpy as np
import pytest
import tensorflow as tf

from reference import log_softmax, softmax
from tf_kd import layers
from tf_kd.losses import response

RNG = np.random.RandomState(0)


def kl(p_logits, q_logits):
    p = softmax(p_logits)
    return np.mean(np.sum(p * (log_softmax(p_logits) - log_softmax(q_logits)), 1))


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_soft_logits(temperature):
    s, t = RNG.randn(2, 8, 10) * 3
    expected = kl(t / temperature, s / temperature)       # no T^2 factor
    got = response.soft_logits(tf.constant(s), tf.constant(t), temperature)
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_dml_is_symmetric_kl_halved():
    s, t = RNG.randn(2, 8, 10)
    expected = (kl(t, s) + kl(s, t)) / 2
    assert float(response.dml(tf.constant(s), tf.constant(t))) == pytest.approx(expected, rel=1e-10)
    assert float(response.dml(tf.constant(t), tf.constant(s))) == pytest.approx(expected, rel=1e-10)


def test_factor_transfer_and_reconstruction_losses():
    a, b = RNG.randn(2, 4, 5, 5, 6)
    assert float(response.factor_transfer(tf.constant(a), tf.constant(b))) == pytest.approx(
        np.mean(np.abs(a - b)))
    assert float(response.reconstruction_loss(tf.constant(a), tf.constant(b))) == pytest.approx(
        np.mean(np.abs(a - b)))


def test_paraphraser_shapes_arguments_and_penalty():
    paraphraser = response.Paraphraser(0.5)
    feature = tf.constant(RNG.randn(2, 8, 8, 16).astype("float32"))
    assert paraphraser(feature).shape == feature.shape
    factor = paraphraser.factor(feature)
    assert factor.shape == (2, 4, 4, 2)                        # D*r^3, stride 1/r
    np.testing.assert_allclose(np.linalg.norm(factor.numpy(), axis=-1), 1, rtol=1e-5)
    convs, deconvs = paraphraser.encoder, paraphraser.decoder
    assert [c.filters for c in convs] == [8, 4, 2] and [c.strides for c in convs][1] == (2, 2)
    assert [d.filters for d in deconvs] == [4, 8, 16] and deconvs[1].strides == (2, 2)
    for conv in convs:   # inherited fan-out init, zero bias, no regulariser
        assert conv.use_bias and conv.kernel_regularizer is None
        assert isinstance(conv.kernel_initializer, tf.keras.initializers.TruncatedNormal)
    assert convs[0].activation is layers.leaky_relu and convs[2].activation.__name__ == "linear"
    for deconv in deconvs:   # outside ResNet_arg_scope: library defaults + leaky ReLU
        assert isinstance(deconv.kernel_initializer, tf.keras.initializers.GlorotUniform)
        assert deconv.use_bias and deconv.kernel_regularizer is None
        assert deconv.activation is layers.leaky_relu
    expected = 5e-4 * sum(np.sum(l.kernel.numpy().astype("float64") ** 2) for l in convs + deconvs)
    assert float(paraphraser.weight_penalty()) == pytest.approx(expected, rel=1e-5)
    assert paraphraser.losses == []


def test_translator_keeps_weight_decay_and_normalises():
    translator = response.Translator(16, 0.5)
    out = translator(tf.constant(RNG.randn(2, 8, 8, 4).astype("float32")))
    assert out.shape == (2, 4, 4, 2)
    np.testing.assert_allclose(np.linalg.norm(out.numpy(), axis=-1), 1, rtol=1e-5)
    kernels = sum(np.sum(c.kernel.numpy().astype("float64") ** 2) for c in translator.convs)
    assert float(sum(translator.losses)) == pytest.approx(5e-4 * kernels / 2, rel=1e-5)


def test_leaky_relu_slope_is_tf1():
    """`tf.nn.leaky_relu(alpha=0.2)`: the same values and gradients, at 0 too."""
    x = tf.constant([-1.5, -0.0, 0.0, 2.0, 1e-30, -1e-30])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, tf1 = layers.leaky_relu(x), tf.nn.leaky_relu(x, alpha=0.2)
    np.testing.assert_array_equal(ours, tf1)
    np.testing.assert_array_equal(tape.gradient(ours, x), tape.gradient(tf1, x))
    np.testing.assert_allclose(layers.leaky_relu(tf.constant([-1.0, 2.0])), [-0.2, 2.0])
