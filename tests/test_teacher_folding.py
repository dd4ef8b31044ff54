"""The frozen teacher's forward pass with batch norm folded into its convolutions."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nets import ResNet
from tf_kd import layers
from tf_kd.distillers import DISTILLERS
from benchmarks.variants import batch_norm_folds, folded_inference


def randomise_batch_norms(model, seed=0):
    """Statistics and affine parameters away from their initial 0 / 1."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.rand(c) + 0.5)
            layer.beta.assign(rng.randn(c) * 0.3)
            layer.moving_mean.assign(rng.randn(c) * 0.3)
            layer.moving_variance.assign(rng.rand(c) + 0.5)


def assert_same_outputs(got, expected):
    assert set(got) == set(expected)
    for key in expected:
        a, b = np.asarray(got[key], "float64"), np.asarray(expected[key], "float64")
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), key


def small_network(batch_norm_class, bias=False):
    """conv-BN pairs in every position the folding must tell apart: a conv
    with a bias, a conv whose output is also a model output, a BN after an
    addition, a conv with an activation."""
    image = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=bias, name="c0")(image)
    x = batch_norm_class(name="bn0", epsilon=1e-5)(x)
    raw = keras.layers.Conv2D(4, 1, name="c1")(x)                       # also an output
    y = batch_norm_class(name="bn1", epsilon=1e-5)(raw)
    z = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu",
                            name="c2")(y)                                # activation: kept
    z = batch_norm_class(name="bn2", epsilon=1e-5)(z)
    s = batch_norm_class(name="bn3", epsilon=1e-5)(keras.layers.Add()([x, y]))
    logits = keras.layers.Dense(5, name="full")(keras.layers.GlobalAveragePooling2D()(z))
    return keras.Model(image, {"raw": raw, "sum": s, "logits": logits})


@pytest.mark.parametrize("batch_norm_class",
                         [keras.layers.BatchNormalization, layers.BatchNormalization])
def test_folded_resnet_teacher_matches_inference(batch_norm_class, monkeypatch):
    import nets.resnet

    def batch_norm(x, name, weight_decay, relu=True):
        x = batch_norm_class(name=name, **layers.batch_norm_args(weight_decay))(x)
        return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x

    monkeypatch.setattr(nets.resnet, "batch_norm", batch_norm)
    teacher = ResNet((16, 16, 3), 10, "Teacher", num_blocks=2, width=0.125)
    randomise_batch_norms(teacher)
    convs = [layer for layer in teacher.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(batch_norm_folds(teacher)) == len(convs)   # every conv has its BN
    x = tf.constant(np.random.RandomState(1).randn(4, 16, 16, 3), tf.float32)
    assert_same_outputs(tf.function(lambda x: folded_inference(teacher, x))(x),
                        teacher(x, training=False))


def test_folds_only_what_it_may():
    model = small_network(keras.layers.BatchNormalization, bias=True)
    randomise_batch_norms(model)
    model.get_layer("c0").bias.assign([0.5, -0.3, 0.2, 1.0])
    folds = batch_norm_folds(model)
    assert sorted(conv.name for conv, _ in folds.values()) == ["c0"]
    x = tf.constant(np.random.RandomState(2).randn(3, 8, 8, 3), tf.float32)
    assert_same_outputs(folded_inference(model, x), model(x, training=False))


def test_distiller_teacher_outputs_follow_the_teachers_variables():
    """Folded from the variables at every call: a teacher loaded after the
    step was traced is the one that runs."""
    student = ResNet((16, 16, 3), 10, "Student", width=0.125)
    teacher = ResNet((16, 16, 3), 10, "Teacher", num_blocks=1, width=0.125)
    distiller = DISTILLERS["Soft_logits"](student, teacher=teacher)
    forward = tf.function(distiller.teacher_outputs)
    x = tf.constant(np.random.RandomState(3).randn(2, 16, 16, 3), tf.float32)
    forward(x)
    randomise_batch_norms(teacher, seed=4)
    teacher.get_layer("conv0").kernel.assign(teacher.get_layer("conv0").kernel * 2)
    assert_same_outputs(forward(x), teacher(x, training=False))
