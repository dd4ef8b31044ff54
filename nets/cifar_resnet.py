"""The CIFAR ResNets of RepDistiller (`resnet8` ... `resnet110`, `resnet8x4`,
`resnet32x4`) as Keras models.

Reference: HobbitLong/RepDistiller `models/resnet.py` at commit
b84f547c5db6a35318d4671d7d5c4de74c822403 (mdistiller's
`mdistiller/models/cifar/resnet.py` at a08d46f10d6102bd6e3f258ca5ac880b020ea259
is the same network). Depth `6n + 2`: conv3x3 + BN + ReLU, three stages of
`n` BasicBlocks (conv3x3-BN-ReLU-conv3x3-BN plus the input, or a 1x1
convolution + BN where the shape changes, then ReLU) at strides 1, 2, 2,
global average pooling and `fc`. Convolutions are drawn by
`kaiming_normal_(mode='fan_out')`, `fc` by PyTorch's default; see
`nets.torch_layers` for what is PyTorch's here.

The model returns a dict of named outputs, as `nets.ResNet`:
- `feat{i}`: stage i's last block after its ReLU (the reference's `f{i+1}`);
- `feat_noact{i}`: the same block before the ReLU (`f{i+1}_pre`, `preact=True`);
- `pool`: the pooled feature; `logits`.
"""

import keras

from nets import torch_layers as tl
from nets.resnet import named_model
from tf_kd import layers


def basic_block(x, planes, stride, name, weight_decay):
    """RepDistiller's `BasicBlock`: returns its output after and before the ReLU."""
    out = tl.conv(x, planes, 3, f"{name}_conv1", weight_decay, stride)
    out = tl.batch_norm(out, f"{name}_bn1", weight_decay)
    out = tl.relu(out, f"{name}_relu1")
    out = tl.conv(out, planes, 3, f"{name}_conv2", weight_decay)
    out = tl.batch_norm(out, f"{name}_bn2", weight_decay)
    if stride != 1 or x.shape[-1] != planes:
        x = tl.conv(x, planes, 1, f"{name}_downsample_0", weight_decay, stride)
        x = tl.batch_norm(x, f"{name}_downsample_1", weight_decay)
    preact = keras.layers.Add(name=f"{name}_add")([out, x])
    return tl.relu(preact, f"{name}_relu"), preact


def cifar_resnet(depth, num_filters, input_shape, num_classes, scope, width,
                 weight_decay):
    """RepDistiller's `ResNet(depth, num_filters, 'basicblock')`."""
    tl.check_width(width, f"resnet{depth}")
    n = (depth - 2) // 6
    image = keras.Input(input_shape, name="image")
    x = tl.conv(image, num_filters[0], 3, "conv1", weight_decay)
    x = tl.batch_norm(x, "bn1", weight_decay)
    x = tl.relu(x, "relu")
    outputs = {}
    for i, (planes, stride) in enumerate(zip(num_filters[1:], (1, 2, 2))):
        for j in range(n):
            x, preact = basic_block(x, planes, stride if j == 0 else 1,
                                    f"layer{i + 1}_{j}", weight_decay)
        outputs[f"feat{i}"] = x
        outputs[f"feat_noact{i}"] = preact
    outputs["pool"] = tl.global_pool(x)
    outputs["logits"] = tl.linear(outputs["pool"], num_classes, "fc", weight_decay)
    return named_model(image, outputs, scope)


def _builder(depth, num_filters):
    def build(input_shape=(32, 32, 3), num_classes=100, scope="Student", width=1.0,
              weight_decay=layers.WEIGHT_DECAY):
        return cifar_resnet(depth, num_filters, input_shape, num_classes, scope, width,
                            weight_decay)
    build.__doc__ = (f"RepDistiller's `resnet{depth}` ({num_filters}); `scope` names the "
                     "model, `width` must be 1, `weight_decay` is PyTorch's SGD weight decay.")
    return build


NARROW, WIDE = [16, 16, 32, 64], [32, 64, 128, 256]
NETWORKS = {f"resnet{depth}": _builder(depth, NARROW) for depth in (8, 14, 20, 32, 44, 56, 110)}
NETWORKS.update(resnet8x4=_builder(8, WIDE), resnet32x4=_builder(32, WIDE))
