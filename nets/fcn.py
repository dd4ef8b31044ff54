"""A small fully convolutional teacher/student pair for semantic segmentation.

Built from the ResNet's blocks (`nets.resnet`) as the networks of He et al.,
"Knowledge adaptation for efficient semantic segmentation", CVPR 2019, are
shaped: a dilated teacher with a fine last feature map (small output stride)
and a compact student with a coarse one (large output stride).

- Teacher: the ResNet's stages, the last one dilated (rate 2) instead of
  strided (Yu et al., "Dilated residual networks", CVPR 2017): output stride 2;
  three blocks per stage, so that it costs about the ResNet32 teacher's CPU
  time (with five, 1.6 times as much).
- Student: one block per stage, half the channels, the ResNet's strides:
  output stride 4.

The classifier is the ResNet's `full` layer made convolutional (a 1x1
convolution with bias, as in Long et al.'s FCN); its score map is upsampled
bilinearly to the input size. The model returns the ResNet's named outputs,
with `logits` of shape [B, H, W, num_classes].
"""

import math

import keras

from nets.resnet import basic_block, batch_norm, named_model, stage_config
from tf_kd import layers

# Blocks per stage, channel multiplier, and per-stage strides and dilations.
SHAPES = {
    "Student": dict(num_blocks=1, channels=0.5, strides=[1, 2, 2], dilations=[1, 1, 1]),
    "Teacher": dict(num_blocks=3, channels=1.0, strides=[1, 2, 1], dilations=[1, 1, 2]),
}


def FCN(input_shape=(32, 32, 1), num_classes=11, scope="Student", num_blocks=None,
        width=1.0, weight_decay=layers.WEIGHT_DECAY):
    """Build the segmentation network of `scope` (`"Student"` or `"Teacher"`).

    Args are those of `nets.ResNet`: `width` multiplies the channels of both
    networks (the student has half the teacher's), `num_blocks` overrides the
    blocks per stage, `weight_decay` is the TF1 `l2_regularizer` scale.
    """
    if scope not in SHAPES:
        raise ValueError(f"Unknown scope {scope!r}; expected one of {sorted(SHAPES)}.")
    shape = SHAPES[scope]
    num_blocks = num_blocks or shape["num_blocks"]
    channels, _ = stage_config(input_shape[0])
    channels = [max(1, int(round(c * width * shape["channels"]))) for c in channels]

    image = keras.Input(input_shape, name="image")
    x = layers.conv2d(channels[0], 3, 1, "conv0", weight_decay)(image)
    x = batch_norm(x, "bn0", weight_decay)
    outputs = {}
    for i, (stride, dilation) in enumerate(zip(shape["strides"], shape["dilations"])):
        for j in range(num_blocks):
            x, pre_activation = basic_block(
                x, channels[i + 1], stride if j == 0 else 1,
                f"Resblock{i}_BasicBlock{j}", weight_decay, dilation)
        outputs[f"feat{i}"] = x
        outputs[f"feat_noact{i}"] = pre_activation
    outputs["pool"] = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    scores = layers.conv2d(
        num_classes, 1, 1, "full", weight_decay, use_bias=True,
        bias_initializer="zeros",
        bias_regularizer=layers.l2_regularizer(weight_decay))(x)
    outputs["logits"] = keras.layers.UpSampling2D(
        math.prod(shape["strides"]), interpolation="bilinear", name="upsample")(scores)
    return named_model(image, outputs, scope)
