"""The fused batch norm of `tf_kd.layers` against NumPy, Keras' layer and TF1's rules."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from reference import batch_norm_inference, batch_norm_train
from tf_kd import layers

EPS = 1e-5


def data(shape, seed=0):
    rng = np.random.RandomState(seed)
    x = (rng.randn(*shape) * 2 + 0.7).astype("float32")
    gamma = (rng.rand(shape[-1]) + 0.5).astype("float32")
    beta = rng.randn(shape[-1]).astype("float32")
    weights = rng.randn(*shape).astype("float32")   # dL/dy of L = sum(weights * y)
    return x, gamma, beta, weights


def make(cls, shape, gamma, beta, moving=None, **kwargs):
    layer = cls(momentum=0.9, epsilon=EPS, **kwargs)
    layer.build((None, *shape[1:]))
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    if moving is not None:
        layer.moving_mean.assign(moving[0])
        layer.moving_variance.assign(moving[1])
    return layer


def run(layer, x, weights, training):
    """Output and the gradients of `sum(weights * output)` with respect to
    the input, gamma and beta."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return [np.asarray(t, dtype="float64") for t in [y, *grads]]


def reference_training_gradients(x, gamma, weights):
    """The batch-norm backward pass in float64, from its formula."""
    x, w = x.astype("float64"), weights.astype("float64")
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axes), x.var(axes)
    xhat = (x - mean) / np.sqrt(var + EPS)
    dx = gamma / np.sqrt(var + EPS) * (w - w.mean(axes) - xhat * (w * xhat).mean(axes))
    return dx, (w * xhat).sum(axes), w.sum(axes)


def close(a, b, scale=None):
    scale = np.abs(b).max() if scale is None else scale
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(scale, 1.0))


@pytest.mark.parametrize("shape", [(16, 5, 6, 3), (24, 4)])
def test_training_outputs_gradients_and_moving_statistics(shape):
    x, gamma, beta, weights = data(shape)
    layer = make(layers.BatchNormalization, x.shape, gamma, beta)
    keras_layer = make(keras.layers.BatchNormalization, x.shape, gamma, beta)
    y, dx, dgamma, dbeta = run(layer, x, weights, training=True)
    ky, kdx, kdgamma, kdbeta = run(keras_layer, x, weights, training=True)

    x64 = x.astype("float64")
    close(y, batch_norm_train(x64, gamma, beta, EPS))
    close(y, ky)
    for got, keras_got, expected in zip((dx, dgamma, dbeta), (kdx, kdgamma, kdbeta),
                                        reference_training_gradients(x, gamma, weights)):
        close(got, expected)
        close(got, keras_got, np.abs(expected).max())

    # TF1's fused update: the moving variance averages the unbiased batch variance
    axes = tuple(range(x.ndim - 1))
    n = x.size // shape[-1]
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * x64.mean(axes), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               0.9 + 0.1 * x64.var(axes, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(keras_layer.moving_variance.numpy(),   # Keras: biased
                               0.9 + 0.1 * x64.var(axes), rtol=1e-5)
    assert n / (n - 1) > 1 + 1e-3   # the two rules are told apart


def test_moving_statistics_over_compiled_steps():
    batches = [data((8, 3, 3, 2), seed)[0] for seed in range(3)]
    _, gamma, beta, _ = data((8, 3, 3, 2))
    layer = make(layers.BatchNormalization, batches[0].shape, gamma, beta)
    step = tf.function(lambda x: layer(x, training=True))
    mean, var = np.zeros(2), np.ones(2)
    for x in batches:
        step(tf.constant(x))
        x64 = x.astype("float64").reshape(-1, 2)
        mean = 0.9 * mean + 0.1 * x64.mean(0)
        var = 0.9 * var + 0.1 * x64.var(0, ddof=1)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-5)


@pytest.mark.parametrize("shape", [(16, 5, 6, 3), (24, 4)])
def test_inference_outputs_and_gradients(shape):
    x, gamma, beta, weights = data(shape)
    moving = (np.array([0.3, -0.2, 0.5, 1.0][:shape[-1]], "float32"),
              np.array([1.5, 0.7, 2.0, 3.0][:shape[-1]], "float32"))
    layer = make(layers.BatchNormalization, x.shape, gamma, beta, moving)
    keras_layer = make(keras.layers.BatchNormalization, x.shape, gamma, beta, moving)
    y, dx, dgamma, dbeta = run(layer, x, weights, training=False)
    ky, kdx, kdgamma, kdbeta = run(keras_layer, x, weights, training=False)
    x64, w64 = x.astype("float64"), weights.astype("float64")
    axes = tuple(range(x.ndim - 1))
    xhat = (x64 - moving[0]) / np.sqrt(moving[1].astype("float64") + EPS)
    close(y, batch_norm_inference(x64, gamma, beta, moving[0], moving[1], EPS))
    close(y, ky)
    close(dx, w64 * gamma / np.sqrt(moving[1].astype("float64") + EPS))
    close(dgamma, (w64 * xhat).sum(axes))
    close(dbeta, w64.sum(axes))
    for got, keras_got in zip((dx, dgamma, dbeta), (kdx, kdgamma, kdbeta)):
        close(got, keras_got)
    np.testing.assert_array_equal(layer.moving_variance.numpy(), moving[1])   # no update


def test_frozen_layer_uses_and_keeps_its_moving_statistics():
    x, gamma, beta, weights = data((8, 4, 4, 3))
    moving = (np.full(3, 0.5, "float32"), np.full(3, 2.0, "float32"))
    layer = make(layers.BatchNormalization, x.shape, gamma, beta, moving)
    layer.trainable = False
    y = layer(x, training=True).numpy()
    close(y, batch_norm_inference(x.astype("float64"), gamma, beta, *moving, EPS))
    np.testing.assert_array_equal(layer.moving_mean.numpy(), moving[0])


def test_other_ranks_take_keras_path_with_the_biased_update():
    """TF1 fused ranks 2 and 4 only; a rank-3 input is normalised by moments,
    with the biased variance in the moving average, as TF1's unfused path."""
    x, gamma, beta, weights = data((6, 5, 3))
    layer = make(layers.BatchNormalization, x.shape, gamma, beta)
    y, dx, dgamma, dbeta = run(layer, x, weights, training=True)
    close(y, batch_norm_train(x.astype("float64"), gamma, beta, EPS))
    close(dx, reference_training_gradients(x, gamma, weights)[0])
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               0.9 + 0.1 * x.astype("float64").var((0, 1)), rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    x, gamma, beta, weights = data((16, 4, 4, 3))
    layer = make(layers.BatchNormalization, x.shape, gamma, beta, dtype=policy)
    reference = make(layers.BatchNormalization, x.shape, gamma, beta)
    low = tf.cast(x, keras.mixed_precision.Policy(policy).compute_dtype)
    y = layer(low, training=True)
    assert y.dtype == low.dtype and layer.moving_variance.dtype == "float32"
    y32 = reference(tf.cast(low, tf.float32), training=True)
    tolerance = 0.02 if policy == "mixed_float16" else 0.1
    np.testing.assert_allclose(np.float32(y), y32.numpy(), atol=tolerance)
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               reference.moving_variance.numpy(), rtol=1e-3)


def test_batch_norm_activation_and_config():
    x, gamma, beta, weights = data((8, 3, 3, 2))
    layer = layers.batch_norm("bn", weight_decay=1e-3)
    y = layer(x, training=True).numpy()
    np.testing.assert_allclose(
        y, np.maximum(batch_norm_train(x.astype("float64"), 1.0, 0.0, EPS), 0), atol=1e-5)
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == "tf_kd>BatchNorm"
    again = keras.saving.deserialize_keras_object(config)
    assert isinstance(again, layers.BatchNorm)
    assert again.activation is keras.activations.relu
    assert (again.momentum, again.epsilon) == (0.9, 1.001e-5)
    assert [w.path.split("/")[-1] for w in layer.weights] == [
        "gamma", "beta", "moving_mean", "moving_variance"]


@pytest.mark.parametrize("shape", [(64, 4, 4, 3), (64, 3)])
def test_networks_run_tf1_fused_epsilon(shape):
    """TF 1.x's `nn.fused_batch_norm` raised epsilon to 1.001e-5: on a batch
    variance of epsilon's order that is told apart from 1e-5 far above
    float32 rounding (rank 2: the MHGD attention networks' batch norms)."""
    layer = layers.batch_norm("bn", activation=None)
    x = (np.random.RandomState(0).randn(*shape) * np.sqrt(1e-5)).astype("float32")
    y = layer(x, training=True).numpy()
    fused = batch_norm_train(x.astype("float64"), 1.0, 0.0, 1.001e-5)
    asked = batch_norm_train(x.astype("float64"), 1.0, 0.0, 1e-5)
    np.testing.assert_allclose(y, fused, rtol=1e-5, atol=1e-6)
    assert np.abs(fused - asked).max() > 50 * np.abs(y - fused).max()


def test_saved_network_loads_without_this_project(tmp_path):
    """Serialised as Keras' own layer: `.keras`, SavedModel and TF Lite load
    in a process that cannot import this project."""
    image = keras.Input((6, 6, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(image)
    x = layers.BatchNormalization(name="bn", momentum=0.9, epsilon=EPS)(x)
    x = keras.layers.ReLU()(x)
    logits = keras.layers.Dense(3, name="full")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(image, {"logits": logits})
    x = np.random.RandomState(1).randn(4, 6, 6, 3).astype("float32")
    model(x, training=True)   # moving statistics away from 0 / 1
    assert keras.saving.serialize_keras_object(model.get_layer("bn"))["module"] == "keras.layers"
    model.save(str(tmp_path / "model.keras"))
    model.export(str(tmp_path / "saved_model"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    (tmp_path / "model.tflite").write_bytes(converter.convert())
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model(x, training=False)["logits"].numpy())
    script = """
import numpy as np, keras, tensorflow as tf
x, expected = np.load("x.npy"), np.load("expected.npy")
a = keras.models.load_model("model.keras")(x, training=False)["logits"].numpy()
saved = tf.saved_model.load("saved_model")
b = saved.serve(x)["logits"].numpy()
c = tf.lite.Interpreter("model.tflite").get_signature_runner()(image=x)["logits"]
for got in (a, b, c):
    assert np.allclose(got, expected, atol=1e-5), np.abs(got - expected).max()
print("loaded")
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=str(tmp_path), env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded" in result.stdout
