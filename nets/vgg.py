"""The CIFAR VGGs of RepDistiller with batch norm (`vgg8`, `vgg11`, `vgg13`,
`vgg16`, `vgg19`: its `vgg*_bn`) as Keras models.

Reference: HobbitLong/RepDistiller `models/vgg.py` at commit
b84f547c5db6a35318d4671d7d5c4de74c822403 (mdistiller's
`mdistiller/models/cifar/vgg.py` at a08d46f10d6102bd6e3f258ca5ac880b020ea259
is the same network). Five blocks of conv3x3 (with bias) + BN + ReLU, the
last ReLU of each block applied outside it; 2x2 max pooling after blocks 0,
1 and 2 (after block 3 too for 64x64 inputs, as the reference), global
average pooling and a linear `classifier` (the fully connected layers of
ImageNet's VGG removed). Convolutions are drawn from `normal(0, sqrt(2 / (k
* k * out_channels)))`, their biases zero; the classifier from `normal(0,
0.01)`, its bias zero.

Named outputs, as the reference's `forward(is_feat=True)`:
- `feat{i}`: block i + 1 after its ReLU (`f{i+1}`; block 0 is the stem);
- `feat_noact{i}`: the same block's last batch norm, before the ReLU
  (`f{i+1}_pre`);
- `pool`: the pooled feature; `logits`.
"""

import keras

from nets import torch_layers as tl
from nets.resnet import named_model
from tf_kd import layers

CONFIGS = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


def block(x, widths, name, weight_decay):
    """The reference's `_make_layers(cfg, batch_norm=True)`: conv-BN-ReLU,
    the last ReLU left out. Layer `{name}_{k}` is the Sequential's module k."""
    for k, width in enumerate(widths):
        if k:
            x = tl.relu(x, f"{name}_{3 * k - 1}")
        x = tl.conv(x, width, 3, f"{name}_{3 * k}", weight_decay, use_bias=True)
        x = tl.batch_norm(x, f"{name}_{3 * k + 1}", weight_decay)
    return x


def vgg(cfg, name, input_shape, num_classes, scope, width, weight_decay):
    """RepDistiller's `VGG(cfg, batch_norm=True, num_classes)`."""
    tl.check_width(width, name)
    image = keras.Input(input_shape, name="image")
    x = image
    outputs = {}
    for i, widths in enumerate(cfg):
        if i and (i < 4 or input_shape[0] == 64):
            x = keras.layers.MaxPooling2D(2, name=f"pool{i - 1}")(x)
        x = block(x, widths, f"block{i}", weight_decay)
        if i:
            outputs[f"feat_noact{i - 1}"] = x
        x = tl.relu(x, f"block{i}_relu")
        if i:
            outputs[f"feat{i - 1}"] = x
    outputs["pool"] = tl.global_pool(x)
    outputs["logits"] = tl.linear(outputs["pool"], num_classes, "classifier", weight_decay,
                                  init=tl.normal(0.01), bias_init="zeros")
    return named_model(image, outputs, scope)


def _builder(name):
    def build(input_shape=(32, 32, 3), num_classes=100, scope="Student", width=1.0,
              weight_decay=layers.WEIGHT_DECAY):
        return vgg(CONFIGS[name], name, input_shape, num_classes, scope, width, weight_decay)
    build.__doc__ = (f"RepDistiller's `{name}_bn`; `scope` names the model, `width` must "
                     "be 1, `weight_decay` is PyTorch's SGD weight decay.")
    return build


NETWORKS = {name: _builder(name) for name in CONFIGS}
