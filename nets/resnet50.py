"""The CIFAR ResNet50 of RepDistiller (`ResNet50`, a teacher) as a Keras model.

Reference: HobbitLong/RepDistiller `models/resnetv2.py` at commit
b84f547c5db6a35318d4671d7d5c4de74c822403 (mdistiller's
`mdistiller/models/cifar/resnetv2.py` at
a08d46f10d6102bd6e3f258ca5ac880b020ea259 is the same network). He et al.'s
ResNet-50 with a CIFAR stem: conv3x3 (64, stride 1) + BN + ReLU, no max
pooling, four stages of 3, 4, 6, 3 Bottlenecks (1x1-BN-ReLU, 3x3-BN-ReLU
carrying the stride, 1x1 to 4x the width-BN, plus the input or a 1x1
convolution + BN of it, then ReLU) of widths 64, 128, 256, 512 at strides 1,
2, 2, 2, global average pooling and `linear`. Convolutions are drawn by
`kaiming_normal_(mode='fan_out')`, `linear` by PyTorch's default (the
reference's `zero_init_residual` is off).

Named outputs, as the reference's `forward(is_feat=True)`:
- `feat{i}`: stage i's last block after its ReLU (`f{i+1}`);
- `feat_noact{i}`: the same block before the ReLU (`f{i+1}_pre`);
- `pool`: the pooled feature; `logits`.
"""

import keras

from nets import torch_layers as tl
from nets.resnet import named_model
from tf_kd import layers

EXPANSION = 4


def bottleneck(x, planes, stride, name, weight_decay):
    """The reference's `Bottleneck`: returns its output after and before the ReLU."""
    out = tl.conv(x, planes, 1, f"{name}_conv1", weight_decay)
    out = tl.batch_norm(out, f"{name}_bn1", weight_decay)
    out = tl.relu(out, f"{name}_relu1")
    out = tl.conv(out, planes, 3, f"{name}_conv2", weight_decay, stride)
    out = tl.batch_norm(out, f"{name}_bn2", weight_decay)
    out = tl.relu(out, f"{name}_relu2")
    out = tl.conv(out, EXPANSION * planes, 1, f"{name}_conv3", weight_decay)
    out = tl.batch_norm(out, f"{name}_bn3", weight_decay)
    if stride != 1 or x.shape[-1] != EXPANSION * planes:
        x = tl.conv(x, EXPANSION * planes, 1, f"{name}_shortcut_0", weight_decay, stride)
        x = tl.batch_norm(x, f"{name}_shortcut_1", weight_decay)
    preact = keras.layers.Add(name=f"{name}_add")([out, x])
    return tl.relu(preact, f"{name}_relu"), preact


def ResNet50(input_shape=(32, 32, 3), num_classes=100, scope="Teacher", width=1.0,
             weight_decay=layers.WEIGHT_DECAY):
    """RepDistiller's `ResNet50`; `scope` names the model, `width` must be 1,
    `weight_decay` is PyTorch's SGD weight decay."""
    tl.check_width(width, "ResNet50")
    image = keras.Input(input_shape, name="image")
    x = tl.conv(image, 64, 3, "conv1", weight_decay)
    x = tl.batch_norm(x, "bn1", weight_decay)
    x = tl.relu(x, "relu")
    outputs = {}
    for i, (planes, blocks, stride) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3),
                                                     (1, 2, 2, 2))):
        for j in range(blocks):
            x, preact = bottleneck(x, planes, stride if j == 0 else 1, f"layer{i + 1}_{j}",
                                   weight_decay)
        outputs[f"feat{i}"] = x
        outputs[f"feat_noact{i}"] = preact
    outputs["pool"] = tl.global_pool(x)
    outputs["logits"] = tl.linear(outputs["pool"], num_classes, "linear", weight_decay)
    return named_model(image, outputs, scope)
