"""The CIFAR-100 networks of RepDistiller: parameter counts and output shapes
against the reference's, PyTorch's padding, initialisation and weight decay,
and the flags that choose them. (One distiller step on each of the 13
standard pairs, started from the pair's recipe file: tests/test_recipes.py.)"""

import math
import os
import shutil
import sys

import numpy as np
import pytest

import nets
from nets import torch_layers
from tf_kd import config as config_module
from tf_kd.errors import UserError

# sum(p.numel() for p in model.parameters()) of HobbitLong/RepDistiller
# models/__init__.py `model_dict[name](num_classes=100)` at commit
# b84f547c5db6a35318d4671d7d5c4de74c822403, computed once with torch 2.13 (CPU).
REFERENCE_PARAMETERS = {
    "resnet8": 83_892, "resnet14": 181_108, "resnet20": 278_324, "resnet32": 472_756,
    "resnet44": 667_188, "resnet56": 861_620, "resnet110": 1_736_564,
    "resnet8x4": 1_233_540, "resnet32x4": 7_433_860,
    "wrn_16_1": 180_916, "wrn_16_2": 703_284, "wrn_40_1": 569_780, "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028, "vgg11": 9_277_284, "vgg13": 9_462_180, "vgg16": 14_774_436,
    "vgg19": 20_086_692,
    "ResNet50": 23_705_252, "MobileNetV2": 812_836, "ShuffleV1": 949_258,
    "ShuffleV2": 1_355_528,
}

# The same models' `forward(x, is_feat=True, preact=...)` on a [2, 3, 32, 32]
# batch: the shapes (NCHW there, NHWC here) of f1, f2, ... (`feat0`, `feat1`,
# ...; f0, the stem, is not exposed) and of the pooled feature.
NARROW = [(32, 32, 16), (16, 16, 32), (8, 8, 64)]
WIDE = [(32, 32, 64), (16, 16, 128), (8, 8, 256)]
WRN2 = [(32, 32, 32), (16, 16, 64), (8, 8, 128)]
VGG = [(16, 16, 128), (8, 8, 256), (4, 4, 512), (4, 4, 512)]
REFERENCE_SHAPES = {
    **{f"resnet{d}": (NARROW, 64) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": (WIDE, 256), "resnet32x4": (WIDE, 256),
    "wrn_16_1": (NARROW, 64), "wrn_40_1": (NARROW, 64),
    "wrn_16_2": (WRN2, 128), "wrn_40_2": (WRN2, 128),
    **{f"vgg{d}": (VGG, 512) for d in (8, 11, 13, 16, 19)},
    "ResNet50": ([(32, 32, 256), (16, 16, 512), (8, 8, 1024), (4, 4, 2048)], 2048),
    "MobileNetV2": ([(16, 16, 12), (8, 8, 16), (4, 4, 48), (2, 2, 160)], 1280),
    "ShuffleV1": ([(16, 16, 240), (8, 8, 480), (4, 4, 960)], 960),
    "ShuffleV2": ([(16, 16, 116), (8, 8, 232), (4, 4, 464)], 1024),
}
NO_PREACT = {"MobileNetV2"}     # its forward has no preact features


def count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def test_every_reference_network_is_registered():
    assert set(REFERENCE_PARAMETERS) == set(nets.NETWORKS) - {"ResNet", "FCN"}


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMETERS))
def test_parameter_count_and_named_outputs(name):
    model = nets.get_network(name)((32, 32, 3), 100)
    assert count(model) == REFERENCE_PARAMETERS[name]
    stages, pooled = REFERENCE_SHAPES[name]
    expected = {f"feat{i}": shape for i, shape in enumerate(stages)}
    if name not in NO_PREACT:
        expected.update({f"feat_noact{i}": shape for i, shape in enumerate(stages)})
    expected.update(pool=(pooled,), logits=(100,))
    assert {k: tuple(v.shape[1:]) for k, v in model.output.items()} == expected


@pytest.fixture(scope="module")
def resnet8():
    return nets.get_network("resnet8")((32, 32, 3), 100)


def test_features_pool_and_logits(resnet8):
    x = np.random.RandomState(0).randn(2, 32, 32, 3).astype("float32")
    out = {k: v.numpy() for k, v in resnet8(x, training=False).items()}
    for i in range(3):
        np.testing.assert_array_equal(out[f"feat{i}"], np.maximum(out[f"feat_noact{i}"], 0))
    np.testing.assert_allclose(out["pool"], out["feat2"].mean((1, 2)), rtol=1e-5, atol=1e-6)
    fc = resnet8.get_layer("fc")
    np.testing.assert_allclose(out["logits"], out["pool"] @ fc.kernel.numpy() + fc.bias.numpy(),
                               rtol=1e-4, atol=1e-5)


def test_strided_convolution_pads_as_pytorch():
    """PyTorch's `padding=1` at stride 2 puts window i on rows 2i-1 .. 2i+1
    (Keras' "same" on 2i .. 2i+2): a one at (2, 2) reaches output (1, 1) only."""
    import keras
    image = keras.Input((4, 4, 1))
    model = keras.Model(image, torch_layers.conv(image, 1, 3, "c", 0, strides=2))
    model.get_layer("c").kernel.assign(np.ones((3, 3, 1, 1), "float32"))
    x = np.zeros((1, 4, 4, 1), "float32")
    x[0, 2, 2, 0] = 1
    np.testing.assert_array_equal(model(x).numpy()[0, ..., 0], [[0, 0], [0, 1]])


def stddev_and_bound(layer, attribute="kernel"):
    w = getattr(layer, attribute).numpy()
    return w.std(), np.abs(w).max()


def test_initialisation_follows_each_reference():
    resnet = nets.get_network("resnet32x4")((32, 32, 3), 100)
    # kaiming_normal_(mode='fan_out'): untruncated normal, std sqrt(2 / (9 * 256))
    std, top = stddev_and_bound(resnet.get_layer("layer3_4_conv2"))
    sigma = math.sqrt(2 / (9 * 256))
    assert std == pytest.approx(sigma, rel=0.02) and top > 3 * sigma
    # nn.Linear's default: U(+-1 / sqrt(fan_in)) for weight and bias
    fc = resnet.get_layer("fc")
    for attribute in ("kernel", "bias"):
        std, top = stddev_and_bound(fc, attribute)
        assert top <= 1 / 16 and std == pytest.approx(1 / 16 / math.sqrt(3), rel=0.1)
    bn = resnet.get_layer("layer1_0_bn1")
    assert (bn.epsilon, bn.momentum) == (1e-5, 0.9)
    np.testing.assert_array_equal(bn.gamma.numpy(), 1)
    np.testing.assert_array_equal(bn.beta.numpy(), 0)

    mobile = nets.get_network("MobileNetV2")((32, 32, 3), 100)
    depthwise = mobile.get_layer("blocks_5_1_conv_3")    # 480 channels
    assert depthwise.kernel.shape == (3, 3, 480, 1)
    std, _ = stddev_and_bound(depthwise)
    assert std == pytest.approx(math.sqrt(2 / (9 * 480)), rel=0.05)
    classifier = mobile.get_layer("classifier_0")
    assert stddev_and_bound(classifier)[0] == pytest.approx(0.01, rel=0.05)
    np.testing.assert_array_equal(classifier.bias.numpy(), 0)

    shuffle = nets.get_network("ShuffleV1")((32, 32, 3), 100)
    # PyTorch's default, fans as PyTorch counts them: a depthwise 3x3 has fan_in 9,
    # a 1x1 of groups 3 from 240 channels fan_in 80
    for name, fan_in in (("layer2_3_conv2", 9), ("layer2_3_conv3", 480 // 4 // 3)):
        std, top = stddev_and_bound(shuffle.get_layer(name))
        assert top <= 1 / math.sqrt(fan_in)
        assert std == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.1)

    vgg = nets.get_network("vgg8")((32, 32, 3), 100)
    np.testing.assert_array_equal(vgg.get_layer("block1_0").bias.numpy(), 0)
    wrn = nets.get_network("wrn_16_2")((32, 32, 3), 100)
    np.testing.assert_array_equal(wrn.get_layer("fc").bias.numpy(), 0)


def test_weight_decay_is_pytorchs_on_every_parameter():
    """SGD(weight_decay=wd) adds wd * w to every parameter's gradient: the
    gradient of wd / 2 * sum(w ** 2)."""
    model = nets.get_network("vgg8")((32, 32, 3), 10, weight_decay=5e-4)
    expected = sum(5e-4 / 2 * np.sum(v.numpy().astype("float64") ** 2)
                   for v in model.trainable_weights)
    assert len(model.losses) == len(model.trainable_weights)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    assert nets.get_network("resnet8")((32, 32, 3), 10, weight_decay=0).losses == []


def test_the_reference_widths_only():
    with pytest.raises(ValueError, match="width"):
        nets.get_network("wrn_16_2")((32, 32, 3), 10, width=0.5)


@pytest.mark.parametrize("overrides, message", [
    (dict(model_name="resnet9"), r"--model_name=resnet9: unknown network; valid: ResNet, FCN, "
                                 r"resnet8, .*ShuffleV2"),
    (dict(Distillation="AT", teacher="t.keras", teacher_model_name="wrn_40_3"),
     r"--teacher_model_name=wrn_40_3: unknown network; valid: .*wrn_40_2"),
    (dict(teacher_model_name="resnet32x4"),
     r"--teacher_model_name=resnet32x4: --Distillation=None has no teacher"),
    (dict(model_name="resnet8x4", width=0.5), r"--width=0.5: only ResNet and FCN"),
    (dict(Distillation="AT", teacher="t.keras", teacher_model_name="resnet32x4", width=0.5),
     r"--width=0.5: only ResNet and FCN"),
])
def test_flags_naming_networks_are_checked(overrides, message):
    with pytest.raises(UserError, match=message) as error:
        config_module.validate(config_module.Config(**overrides))
    assert "\n" not in str(error.value)


def test_teacher_model_name_goes_to_methods_with_a_teacher():
    assert config_module.takes_flag("AT", "--teacher_model_name")
    assert config_module.takes_flag("DML", "--teacher_model_name")
    assert not config_module.takes_flag("None", "--teacher_model_name")
    assert not config_module.takes_flag("Teacher", "--teacher_model_name")
    config_module.validate(config_module.Config(Distillation="DML", model_name="resnet8",
                                                teacher_model_name="resnet20"))


def test_autotrain_trains_the_teacher_as_teacher_model_name():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts"))
    import autotrain
    extra = ["--model_name=resnet8x4", "--teacher_model_name=resnet32x4"]
    assert autotrain.teacher_network(["--main_scope=Teacher", "--model_name=resnet8x4"],
                                     extra) == ["--main_scope=Teacher", "--model_name=resnet32x4"]
    assert autotrain.teacher_network(["--main_scope=Teacher"], []) == ["--main_scope=Teacher"]


def test_a_student_distils_from_a_teacher_of_another_network(tmp_path):
    from tf_kd import training

    def tiny(train_dir, **overrides):
        return training.Config(train_dir=str(tmp_path / train_dir), dataset="synthetic",
                               train_epoch=1, batch_size=32, val_batch_size=50,
                               train_subset=64, test_subset=50, verbose=0, **overrides)

    teacher = training.train(tiny("teacher", main_scope="Teacher", model_name="resnet14"))
    assert teacher.record["architecture"]["model_name"] == "resnet14"
    student = training.train(tiny("student", Distillation="Soft_logits", model_name="resnet8",
                                  teacher=teacher.train_dir, teacher_model_name="resnet14"))
    assert student.record["config"]["teacher_model_name"] == "resnet14"
    assert student.record["architecture"]["model_name"] == "resnet8"
    with pytest.raises(UserError, match="model_name 'resnet14'.*pass "
                                        "--teacher_model_name=resnet14"):
        training.train(tiny("other", Distillation="Soft_logits", model_name="resnet8",
                            teacher=teacher.train_dir))
    alone = str(tmp_path / "teacher.keras")      # a .keras file without its run record
    shutil.copy(f"{teacher.train_dir}/model.keras", alone)
    with pytest.raises(UserError, match="missing.*--teacher_model_name=resnet20"):
        training.train(tiny("other", Distillation="Soft_logits", model_name="resnet8",
                            teacher=alone, teacher_model_name="resnet20"))
