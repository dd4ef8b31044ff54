"""PyTorch's layers as the RepDistiller networks use them, in Keras (NHWC).

The CIFAR-100 networks of RepDistiller and mdistiller (`nets.cifar_resnet`,
`nets.wrn`, `nets.vgg`, `nets.mobilenetv2`, `nets.shufflenet`,
`nets.resnet50`) are built from these, so that they compute what the
PyTorch definitions compute:

- Padding: `nn.Conv2d(padding=k // 2)` pads every side. Keras' "same" pads
  a stride-2 convolution on the bottom and right only, which moves every
  window by a pixel, so a strided convolution is `ZeroPadding2D` + "valid";
  at stride 1 "same" is the same symmetric padding.
- Initialisation, with the fans PyTorch counts (`fan_in = in_channels /
  groups * k * k`, `fan_out = out_channels * k * k`, a depthwise
  convolution's `out_channels` being its channels): `kaiming_normal` is
  `nn.init.kaiming_normal_(mode='fan_out', nonlinearity='relu')`, the same
  distribution as the `normal_(0, sqrt(2 / n))` with `n = k * k *
  out_channels` of some networks (an untruncated normal); `pytorch_default`
  is what `nn.Conv2d` and `nn.Linear` draw when a network sets nothing
  (`kaiming_uniform_(a=sqrt(5))` for weights, and the same bound for
  biases): uniform in `±1 / sqrt(fan_in)`.
- `nn.BatchNorm2d`: epsilon 1e-5, momentum 0.1 (Keras' 0.9), weight 1, bias
  0, on `tf_kd.layers.BatchNormalization`, whose running variance averages
  the unbiased batch variance, as PyTorch's does.
- Weight decay: the reference recipe's `SGD(weight_decay=5e-4)` adds
  `5e-4 * w` to the gradient of every parameter (convolution and linear
  weights and biases, batch-norm weights and biases), which is the gradient of
  a loss term `5e-4 / 2 * sum(w ** 2)`: `tf_kd.layers.l2_regularizer(5e-4)`
  on each of them, so `--weight_decay=5e-4` is the reference's setting.

Layers are named by the reference's module paths with `_` for `.`
(`layer1_0_conv1` is `layer1.0.conv1`), so that a PyTorch `state_dict` maps
onto the Keras weights one-to-one (`scripts/convert_teacher.py`).
"""

import math

import keras

from tf_kd import layers

EPSILON = 1e-5     # nn.BatchNorm2d's eps
MOMENTUM = 0.9     # Keras' sense of nn.BatchNorm2d's momentum 0.1


def kaiming_normal(fan_in, fan_out):
    """`nn.init.kaiming_normal_(mode='fan_out', nonlinearity='relu')`."""
    return keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / fan_out))


def pytorch_default(fan_in, fan_out):
    """PyTorch's own initialisation of a convolution or linear layer's
    weight and bias: uniform in `±1 / sqrt(fan_in)`."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def normal(stddev):
    """`normal_(0, stddev)`, whatever the fans."""
    return lambda fan_in, fan_out: keras.initializers.RandomNormal(stddev=stddev)


def conv(x, filters, kernel_size, name, weight_decay, strides=1, groups=1,
         init=kaiming_normal, use_bias=False):
    """`nn.Conv2d(in, filters, kernel_size, strides, padding=kernel_size // 2,
    groups=groups, bias=use_bias)` initialised by `init(fan_in, fan_out)`; a
    bias is zero. `groups` equal to the channels is a `DepthwiseConv2D`."""
    channels = x.shape[-1]
    fan_in = channels // groups * kernel_size ** 2
    initializer = init(fan_in, filters * kernel_size ** 2)
    padding = "same"
    if strides > 1 and kernel_size > 1:
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    regularizer = layers.l2_regularizer(weight_decay)
    common = dict(strides=strides, padding=padding, use_bias=use_bias,
                  bias_initializer="zeros", bias_regularizer=regularizer, name=name)
    if groups > 1 and groups == channels == filters:
        return keras.layers.DepthwiseConv2D(
            kernel_size, depthwise_initializer=initializer,
            depthwise_regularizer=regularizer, **common)(x)
    return keras.layers.Conv2D(
        filters, kernel_size, groups=groups, kernel_initializer=initializer,
        kernel_regularizer=regularizer, **common)(x)


def batch_norm(x, name, weight_decay):
    """`nn.BatchNorm2d` (weight 1, bias 0)."""
    return layers.BatchNormalization(
        momentum=MOMENTUM, epsilon=EPSILON, name=name,
        gamma_regularizer=layers.l2_regularizer(weight_decay),
        beta_regularizer=layers.l2_regularizer(weight_decay))(x)


def relu(x, name):
    return keras.layers.ReLU(name=name)(x)


def linear(x, units, name, weight_decay, init=pytorch_default, bias_init=pytorch_default):
    """`nn.Linear(in, units)`, weight drawn by `init(fan_in, fan_out)`, bias by
    `bias_init` (or "zeros")."""
    fan_in = x.shape[-1]
    if callable(bias_init):
        bias_init = bias_init(fan_in, units)
    return keras.layers.Dense(
        units, kernel_initializer=init(fan_in, units), bias_initializer=bias_init,
        kernel_regularizer=layers.l2_regularizer(weight_decay),
        bias_regularizer=layers.l2_regularizer(weight_decay), name=name)(x)


def global_pool(x):
    """The pooled feature `pool`: the mean of the last feature map. The
    references' fixed windows (`AvgPool2d(8)`, `avg_pool2d(out, 4)`, ...) cover
    the whole last map of a 32x32 input, where the two are the same."""
    return keras.layers.GlobalAveragePooling2D(name="pool")(x)


def padded_avg_pool(x, name):
    """`nn.AvgPool2d(3, stride=2, padding=1)`: the padding zeros count in
    the mean (PyTorch's `count_include_pad=True`)."""
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return keras.layers.AveragePooling2D(3, 2, name=name)(x)


def channel_shuffle(x, groups, name):
    """ShuffleNet's channel shuffle: channel `g * (C / groups) + j` moves to
    `j * groups + g` (the references' NCHW view/permute/reshape)."""
    height, width, channels = x.shape[1:]
    x = keras.layers.Reshape((height, width, groups, channels // groups),
                             name=f"{name}_split")(x)
    x = keras.layers.Permute((1, 2, 4, 3), name=f"{name}_transpose")(x)
    return keras.layers.Reshape((height, width, channels), name=name)(x)


def check_width(width, network):
    """The reference networks have their published widths only."""
    if width != 1.0:
        raise ValueError(f"{network} has the reference's widths: width must be 1.0, "
                         f"not {width}.")
