"""The wide residual networks of RepDistiller (`wrn_16_1`, `wrn_16_2`,
`wrn_40_1`, `wrn_40_2`) as Keras models.

Reference: HobbitLong/RepDistiller `models/wrn.py` at commit
b84f547c5db6a35318d4671d7d5c4de74c822403 (mdistiller's
`mdistiller/models/cifar/wrn.py` at a08d46f10d6102bd6e3f258ca5ac880b020ea259
is the same network). WRN-d-k (Zagoruyko & Komodakis, BMVC 2016), depth
`6n + 4`, widening factor k: conv3x3 (16), three stages of `n` pre-activation
blocks (BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the input; where the width
changes the shortcut is a 1x1 convolution of the first BN-ReLU's output) at
strides 1, 2, 2 and widths 16k, 32k, 64k, then BN-ReLU, global average
pooling and `fc` (no dropout: the reference's dropRate is 0). Convolutions
are drawn from `normal(0, sqrt(2 / (k * k * out_channels)))`
(`torch_layers.kaiming_normal`), `fc`'s weight by PyTorch's default, its bias
zero.

Named outputs, as the reference's `forward(is_feat=True)`:
- `feat{i}`: stage i's output, the residual sum (`f{i+1}`; a pre-activation
  network has no ReLU there);
- `feat_noact{i}`: that sum through the batch norm that follows it, before its
  ReLU (`preact=True`: the next stage's first `bn1`, the final `bn1` for the
  last stage);
- `pool`: the pooled feature after the final BN-ReLU; `logits`.
"""

import keras

from nets import torch_layers as tl
from nets.resnet import named_model
from tf_kd import layers


def basic_block(x, planes, stride, name, weight_decay):
    """The reference's `BasicBlock`; returns its output and its first batch
    norm's output."""
    normed = tl.batch_norm(x, f"{name}_bn1", weight_decay)
    activated = tl.relu(normed, f"{name}_relu1")
    out = tl.conv(activated, planes, 3, f"{name}_conv1", weight_decay, stride)
    out = tl.batch_norm(out, f"{name}_bn2", weight_decay)
    out = tl.relu(out, f"{name}_relu2")
    out = tl.conv(out, planes, 3, f"{name}_conv2", weight_decay)
    if x.shape[-1] == planes:
        shortcut = x
    else:
        shortcut = tl.conv(activated, planes, 1, f"{name}_convShortcut", weight_decay,
                           stride)
    return keras.layers.Add(name=f"{name}_add")([shortcut, out]), normed


def wide_resnet(depth, widen_factor, input_shape, num_classes, scope, width,
                weight_decay):
    """RepDistiller's `WideResNet(depth, num_classes, widen_factor)`."""
    tl.check_width(width, f"wrn_{depth}_{widen_factor}")
    n = (depth - 4) // 6
    image = keras.Input(input_shape, name="image")
    x = tl.conv(image, 16, 3, "conv1", weight_decay)
    outputs = {}
    for i, (planes, stride) in enumerate(zip((16, 32, 64), (1, 2, 2))):
        for j in range(n):
            x, normed = basic_block(x, planes * widen_factor, stride if j == 0 else 1,
                                    f"block{i + 1}_layer_{j}", weight_decay)
            if i > 0 and j == 0:
                outputs[f"feat_noact{i - 1}"] = normed
        outputs[f"feat{i}"] = x
    outputs["feat_noact2"] = x = tl.batch_norm(x, "bn1", weight_decay)
    x = tl.relu(x, "relu")
    outputs["pool"] = tl.global_pool(x)
    outputs["logits"] = tl.linear(outputs["pool"], num_classes, "fc", weight_decay,
                                  bias_init="zeros")
    return named_model(image, outputs, scope)


def _builder(depth, widen_factor):
    def build(input_shape=(32, 32, 3), num_classes=100, scope="Student", width=1.0,
              weight_decay=layers.WEIGHT_DECAY):
        return wide_resnet(depth, widen_factor, input_shape, num_classes, scope, width,
                           weight_decay)
    build.__doc__ = (f"RepDistiller's `wrn_{depth}_{widen_factor}`; `scope` names the "
                     "model, `width` must be 1, `weight_decay` is PyTorch's SGD weight decay.")
    return build


NETWORKS = {f"wrn_{d}_{k}": _builder(d, k) for d, k in ((16, 1), (16, 2), (40, 1), (40, 2))}
