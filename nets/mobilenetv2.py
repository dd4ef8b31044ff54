"""The CIFAR MobileNetV2 of RepDistiller (`MobileNetV2`: its `mobile_half`,
expansion 6, width 0.5) as a Keras model.

Reference: HobbitLong/RepDistiller `models/mobilenetv2.py` at commit
b84f547c5db6a35318d4671d7d5c4de74c822403 (mdistiller's
`mdistiller/models/cifar/mobilenetv2.py` at
a08d46f10d6102bd6e3f258ca5ac880b020ea259 is the same network), from Jin et
al., "Knowledge distillation via route constrained optimization", ICCV 2019.
conv3x3 stride 2 + BN + ReLU, seven stages of inverted residual blocks
(1x1 expansion-BN-ReLU, depthwise 3x3-BN-ReLU, 1x1 projection-BN, plus the
input where the shape stays), conv1x1 to 1280 + BN + ReLU, global average
pooling and a linear classifier. Convolutions are drawn from `normal(0,
sqrt(2 / (k * k * out_channels)))`, the classifier from `normal(0, 0.01)`,
biases zero.

Named outputs, as the reference's `forward(is_feat=True)` (which has no
pre-activation features: a block ends in its linear projection):
- `feat0` ... `feat3`: the outputs of stages 1, 2, 4 and 6 (`f1` ... `f4`);
- `pool`: the pooled 1280-wide feature; `logits`.
"""

import keras

from nets import torch_layers as tl
from nets.resnet import named_model
from tf_kd import layers

# channels c, blocks n, stride s of the first block (the reference's table; the
# expansion t is 1 in stage 0, `expansion` after)
STAGES = [(16, 1, 1), (24, 2, 1), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)]
FEATURE_STAGES = (1, 2, 4, 6)


def inverted_residual(x, planes, stride, expansion, name, weight_decay):
    """The reference's `InvertedResidual`; layer `{name}_conv_{k}` is its
    `conv` Sequential's module k."""
    hidden = x.shape[-1] * expansion
    out = tl.conv(x, hidden, 1, f"{name}_conv_0", weight_decay)
    out = tl.batch_norm(out, f"{name}_conv_1", weight_decay)
    out = tl.relu(out, f"{name}_conv_2")
    out = tl.conv(out, hidden, 3, f"{name}_conv_3", weight_decay, stride, groups=hidden)
    out = tl.batch_norm(out, f"{name}_conv_4", weight_decay)
    out = tl.relu(out, f"{name}_conv_5")
    out = tl.conv(out, planes, 1, f"{name}_conv_6", weight_decay)
    out = tl.batch_norm(out, f"{name}_conv_7", weight_decay)
    if stride == 1 and x.shape[-1] == planes:
        out = keras.layers.Add(name=f"{name}_add")([x, out])
    return out


def MobileNetV2(input_shape=(32, 32, 3), num_classes=100, scope="Student", width=1.0,
                weight_decay=layers.WEIGHT_DECAY, expansion=6, width_mult=0.5):
    """RepDistiller's `mobilenetv2_T_w(expansion, width_mult)`, by default its
    `mobile_half`. `scope` names the model; `width` (the project's flag) must
    be 1; `weight_decay` is PyTorch's SGD weight decay."""
    tl.check_width(width, "MobileNetV2")
    image = keras.Input(input_shape, name="image")
    x = tl.conv(image, int(32 * width_mult), 3, "conv1_0", weight_decay, 2)
    x = tl.batch_norm(x, "conv1_1", weight_decay)
    x = tl.relu(x, "conv1_2")
    outputs = {}
    for i, (c, n, s) in enumerate(STAGES):
        for j in range(n):
            x = inverted_residual(x, int(c * width_mult), s if j == 0 else 1,
                                  expansion if i else 1, f"blocks_{i}_{j}", weight_decay)
        if i in FEATURE_STAGES:
            outputs[f"feat{FEATURE_STAGES.index(i)}"] = x
    last = int(1280 * width_mult) if width_mult > 1.0 else 1280
    x = tl.conv(x, last, 1, "conv2_0", weight_decay)
    x = tl.batch_norm(x, "conv2_1", weight_decay)
    x = tl.relu(x, "conv2_2")
    outputs["pool"] = tl.global_pool(x)
    outputs["logits"] = tl.linear(outputs["pool"], num_classes, "classifier_0",
                                  weight_decay, init=tl.normal(0.01), bias_init="zeros")
    return named_model(image, outputs, scope)
