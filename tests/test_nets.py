import math

import numpy as np
import pytest

from nets import ResNet, feature_names, get_network
from tf_kd import layers


@pytest.fixture(scope="module")
def cifar_student():
    return ResNet((32, 32, 3), 100, "Student")


@pytest.fixture(scope="module")
def cifar_teacher():
    return ResNet((32, 32, 3), 100, "Teacher")


def count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def test_parameter_counts_match_tf1(cifar_student, cifar_teacher):
    assert count(cifar_student) == 1_233_540
    assert count(cifar_teacher) == 7_433_860


def test_depths(cifar_student, cifar_teacher):
    def blocks(m):
        return {l.name.split("_")[1] for l in m.layers if l.name.startswith("Resblock0_")}
    assert blocks(cifar_student) == {"BasicBlock0"}
    assert blocks(cifar_teacher) == {f"BasicBlock{i}" for i in range(5)}


def test_named_outputs_cifar(cifar_student):
    out = cifar_student(np.zeros((2, 32, 32, 3), "float32"), training=False)
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {
        "feat0": (2, 32, 32, 64), "feat_noact0": (2, 32, 32, 64),
        "feat1": (2, 16, 16, 128), "feat_noact1": (2, 16, 16, 128),
        "feat2": (2, 8, 8, 256), "feat_noact2": (2, 8, 8, 256),
        "pool": (2, 256), "logits": (2, 100)}
    assert feature_names(cifar_student) == ["feat0", "feat1", "feat2"]
    assert feature_names(cifar_student, "feat_noact") == [
        "feat_noact0", "feat_noact1", "feat_noact2"]


def test_feat_is_relu_of_feat_noact_and_pool_is_mean(cifar_student):
    x = np.random.RandomState(0).randn(2, 32, 32, 3).astype("float32")
    out = {k: v.numpy() for k, v in cifar_student(x, training=False).items()}
    for i in range(3):
        np.testing.assert_allclose(out[f"feat{i}"], np.maximum(out[f"feat_noact{i}"], 0))
    np.testing.assert_allclose(out["pool"], out["feat2"].mean((1, 2)), rtol=1e-5, atol=1e-6)
    full = cifar_student.get_layer("full")
    np.testing.assert_allclose(
        out["logits"], out["pool"] @ full.kernel.numpy() + full.bias.numpy(), rtol=1e-4, atol=1e-5)


def test_large_input_configuration():
    model = ResNet((64, 64, 3), 10, "Student", width=0.25)
    out = model(np.zeros((1, 64, 64, 3), "float32"))
    assert feature_names(model) == [f"feat{i}" for i in range(5)]
    # channels [16, 32, 64, 128, 256, 512] x 0.25, strides [1, 2, 2, 2, 2]
    assert [tuple(out[f"feat{i}"].shape[1:]) for i in range(5)] == [
        (64, 64, 8), (32, 32, 16), (16, 16, 32), (8, 8, 64), (4, 4, 128)]
    assert model.get_layer("conv0").filters == 4


def test_grayscale_input_and_width():
    model = ResNet((28, 28, 1), 10, "Teacher", width=0.25)
    assert model(np.zeros((1, 28, 28, 1), "float32"))["logits"].shape == (1, 10)


def test_layer_arguments_follow_tf1_arg_scope(cifar_student):
    conv = cifar_student.get_layer("Resblock1_BasicBlock0_conv0")
    assert not conv.use_bias and conv.padding == "same" and conv.strides == (2, 2)
    bn = cifar_student.get_layer("Resblock1_BasicBlock0_bn0")
    assert bn.momentum == 0.9 and bn.epsilon == layers.FUSED_EPSILON == 1.001e-5 and bn.center and bn.scale
    full = cifar_student.get_layer("full")
    assert full.use_bias and full.bias_regularizer is not None


def test_initializer_is_tf1_variance_scaling_fan_out(cifar_teacher):
    kernel = cifar_teacher.get_layer("Resblock2_BasicBlock3_conv1").kernel.numpy()
    fan_out = 3 * 3 * 256
    stddev = math.sqrt(1.3 * 2.0 / fan_out)     # TF1 trunc_stddev
    assert np.abs(kernel).max() <= 2 * stddev
    # a normal truncated at 2 sigma has std 0.87962566 sigma
    assert kernel.std() == pytest.approx(0.87962566 * stddev, rel=0.02)
    assert abs(kernel.mean()) < 0.02 * stddev
    full = cifar_teacher.get_layer("full")
    assert np.abs(full.kernel.numpy()).max() <= 2 * math.sqrt(2.6 / 100)
    np.testing.assert_array_equal(full.bias.numpy(), 0)


def test_weight_decay_is_tf1_l2(cifar_student):
    scale = 5e-4
    expected = 0.0
    for layer in cifar_student.layers:
        for v in layer.trainable_weights:   # kernels, BN gamma/beta, dense bias
            expected += scale * np.sum(v.numpy().astype("float64") ** 2) / 2
    total = float(sum(cifar_student.losses))
    assert total == pytest.approx(expected, rel=1e-5)
    assert len(cifar_student.losses) == len(cifar_student.trainable_weights)
    assert layers.l2_regularizer(0) is None


def test_no_weight_decay():
    model = ResNet((32, 32, 3), 10, "Student", width=0.25, weight_decay=0)
    assert model.losses == []


def test_unknown_names():
    with pytest.raises(ValueError, match="Student"):
        ResNet(scope="Assistant")
    with pytest.raises(ValueError, match="ResNet"):
        get_network("VGG")
