"""The CIFAR ShuffleNets of RepDistiller (`ShuffleV1`, `ShuffleV2`) as Keras
models.

References: HobbitLong/RepDistiller `models/ShuffleNetv1.py` and
`models/ShuffleNetv2.py` at commit b84f547c5db6a35318d4671d7d5c4de74c822403
(mdistiller's `mdistiller/models/cifar/ShuffleNetv1.py` and `ShuffleNetv2.py`
at a08d46f10d6102bd6e3f258ca5ac880b020ea259 are the same networks), after
Zhang et al., CVPR 2018 and Ma et al., ECCV 2018, with a 1x1 stem (24
channels, stride 1) for 32x32 inputs. Neither reference initialises its
layers: every convolution and linear layer has PyTorch's default
(`torch_layers.pytorch_default`).

- ShuffleV1 (groups 3, stages of 4, 8, 4 blocks, 240 / 480 / 960 channels):
  a block is grouped 1x1-BN-ReLU, channel shuffle, depthwise 3x3-BN-ReLU,
  grouped 1x1-BN, then the sum with its input and ReLU; the first block of a
  stage (stride 2) concatenates a 3x3 average pooling of its input instead,
  and its first 1x1 is not grouped where the input is the 24-channel stem.
- ShuffleV2 (net size 1: stages of 3, 7, 3 blocks after a down-sampling
  block, 116 / 232 / 464 channels, a 1x1 to 1024 at the end): a block splits
  its channels in two, passes the first half and 1x1-BN-ReLU, depthwise
  3x3-BN, 1x1-BN-ReLU the second, concatenates and shuffles (groups 2).

Named outputs, as the references' `forward(is_feat=True)`:
- `feat{i}`: stage i's output (`f{i+1}`);
- `feat_noact{i}`: its last block before the final ReLU (`f{i+1}_pre`). For
  ShuffleV2 that is, as in the reference, the concatenation of the passed-on
  half and the branch before its ReLU, not shuffled;
- `pool`: the pooled feature; `logits`.
"""

import keras

from nets import torch_layers as tl
from nets.resnet import named_model
from tf_kd import layers

STEM = 24


def conv_bn(x, filters, kernel_size, name, bn_name, weight_decay, strides=1, groups=1):
    """A default-initialised convolution and its batch norm."""
    x = tl.conv(x, filters, kernel_size, name, weight_decay, strides, groups,
                init=tl.pytorch_default)
    return tl.batch_norm(x, bn_name, weight_decay)


def v1_bottleneck(x, planes, stride, groups, name, weight_decay):
    """ShuffleNetv1's `Bottleneck`: returns its output after and before the ReLU."""
    mid = planes // 4
    first_groups = 1 if x.shape[-1] == STEM else groups
    out = conv_bn(x, mid, 1, f"{name}_conv1", f"{name}_bn1", weight_decay,
                  groups=first_groups)
    out = tl.relu(out, f"{name}_relu1")
    if first_groups > 1:
        out = tl.channel_shuffle(out, first_groups, f"{name}_shuffle1")
    out = conv_bn(out, mid, 3, f"{name}_conv2", f"{name}_bn2", weight_decay, stride,
                  groups=mid)
    out = tl.relu(out, f"{name}_relu2")
    out = conv_bn(out, planes, 1, f"{name}_conv3", f"{name}_bn3", weight_decay,
                  groups=groups)
    if stride == 2:
        shortcut = tl.padded_avg_pool(x, f"{name}_shortcut_0")
        preact = keras.layers.Concatenate(name=f"{name}_cat")([out, shortcut])
    else:
        preact = keras.layers.Add(name=f"{name}_add")([out, x])
    return tl.relu(preact, f"{name}_relu"), preact


def ShuffleV1(input_shape=(32, 32, 3), num_classes=100, scope="Student", width=1.0,
              weight_decay=layers.WEIGHT_DECAY):
    """RepDistiller's `ShuffleV1`; `scope` names the model, `width` must be 1,
    `weight_decay` is PyTorch's SGD weight decay."""
    tl.check_width(width, "ShuffleV1")
    groups = 3
    image = keras.Input(input_shape, name="image")
    x = conv_bn(image, STEM, 1, "conv1", "bn1", weight_decay)
    x = tl.relu(x, "relu")
    outputs = {}
    for i, (planes, blocks) in enumerate(zip((240, 480, 960), (4, 8, 4))):
        for j in range(blocks):
            stride = 2 if j == 0 else 1
            # the first block concatenates its input to reach `planes`
            x, preact = v1_bottleneck(x, planes - (x.shape[-1] if j == 0 else 0), stride,
                                      groups, f"layer{i + 1}_{j}", weight_decay)
        outputs[f"feat{i}"] = x
        outputs[f"feat_noact{i}"] = preact
    outputs["pool"] = tl.global_pool(x)
    outputs["logits"] = tl.linear(outputs["pool"], num_classes, "linear", weight_decay)
    return named_model(image, outputs, scope)


def v2_block(x, name, weight_decay):
    """ShuffleNetv2's `BasicBlock`: returns its output and its pre-activation."""
    half = x.shape[-1] // 2
    passed, branch = x[..., :half], x[..., half:]
    out = conv_bn(branch, half, 1, f"{name}_conv1", f"{name}_bn1", weight_decay)
    out = tl.relu(out, f"{name}_relu1")
    out = conv_bn(out, half, 3, f"{name}_conv2", f"{name}_bn2", weight_decay, groups=half)
    out = conv_bn(out, half, 1, f"{name}_conv3", f"{name}_bn3", weight_decay)
    preact = keras.layers.Concatenate(name=f"{name}_preact")([passed, out])
    out = tl.relu(out, f"{name}_relu3")
    out = keras.layers.Concatenate(name=f"{name}_cat")([passed, out])
    return tl.channel_shuffle(out, 2, f"{name}_shuffle"), preact


def v2_down_block(x, planes, name, weight_decay):
    """ShuffleNetv2's `DownBlock` (stride 2)."""
    channels, mid = x.shape[-1], planes // 2
    left = conv_bn(x, channels, 3, f"{name}_conv1", f"{name}_bn1", weight_decay, 2,
                   groups=channels)
    left = conv_bn(left, mid, 1, f"{name}_conv2", f"{name}_bn2", weight_decay)
    left = tl.relu(left, f"{name}_relu2")
    right = conv_bn(x, mid, 1, f"{name}_conv3", f"{name}_bn3", weight_decay)
    right = tl.relu(right, f"{name}_relu3")
    right = conv_bn(right, mid, 3, f"{name}_conv4", f"{name}_bn4", weight_decay, 2,
                    groups=mid)
    right = conv_bn(right, mid, 1, f"{name}_conv5", f"{name}_bn5", weight_decay)
    right = tl.relu(right, f"{name}_relu5")
    out = keras.layers.Concatenate(name=f"{name}_cat")([left, right])
    return tl.channel_shuffle(out, 2, f"{name}_shuffle")


def ShuffleV2(input_shape=(32, 32, 3), num_classes=100, scope="Student", width=1.0,
              weight_decay=layers.WEIGHT_DECAY):
    """RepDistiller's `ShuffleV2` (net size 1); `scope` names the model,
    `width` must be 1, `weight_decay` is PyTorch's SGD weight decay."""
    tl.check_width(width, "ShuffleV2")
    image = keras.Input(input_shape, name="image")
    x = conv_bn(image, STEM, 1, "conv1", "bn1", weight_decay)
    x = tl.relu(x, "relu1")
    outputs = {}
    for i, (planes, blocks) in enumerate(zip((116, 232, 464), (3, 7, 3))):
        x = v2_down_block(x, planes, f"layer{i + 1}_0", weight_decay)
        for j in range(1, blocks + 1):
            x, preact = v2_block(x, f"layer{i + 1}_{j}", weight_decay)
        outputs[f"feat{i}"] = x
        outputs[f"feat_noact{i}"] = preact
    x = conv_bn(x, 1024, 1, "conv2", "bn2", weight_decay)
    x = tl.relu(x, "relu2")
    outputs["pool"] = tl.global_pool(x)
    outputs["logits"] = tl.linear(outputs["pool"], num_classes, "linear", weight_decay)
    return named_model(image, outputs, scope)
