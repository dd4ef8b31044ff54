"""Keras layers with the defaults of the TF1 `ResNet_arg_scope`.

In the TF1 code every `tf.contrib.layers` call inside the network function,
the distillation modules included, inherits this scope:

- conv2d / fully_connected: no bias, no activation, weights drawn by
  `variance_scaling_initializer(mode='FAN_OUT')`, `l2_regularizer(weight_decay)`;
- batch_norm: scale and center, decay 0.9, epsilon 1e-5, ReLU activation,
  `l2_regularizer(weight_decay)` on gamma and beta. Every one ran on TF 1.x's
  `nn.fused_batch_norm`, which raised epsilon to at least 1.001e-5 ("a
  requirement by CUDNN"), so the networks ran with `FUSED_EPSILON`.

The factories below return Keras layers with exactly these defaults; a caller
overrides an argument the way a TF1 call or inner `arg_scope` did.
"""

import math

import keras
import tensorflow as tf
from keras.src import api_export

WEIGHT_DECAY = 5e-4
# TF 1.x `nn.fused_batch_norm`'s floor on epsilon, what `ResNet_arg_scope`'s 1e-5 ran as
FUSED_EPSILON = 1.001e-5


def variance_scaling_fan_out(fan_out, factor=2.0):
    """`tf.contrib.layers.variance_scaling_initializer(mode='FAN_OUT')`.

    TF1 draws a normal truncated at two standard deviations with standard
    deviation `sqrt(1.3 * factor / fan_out)` (Keras' `VarianceScaling` uses a
    slightly different correction), which is Keras' `TruncatedNormal` with
    that standard deviation. `fan_out` is the number of outputs times the
    receptive field size.
    """
    return keras.initializers.TruncatedNormal(
        stddev=math.sqrt(1.3 * factor / fan_out))


def l2_regularizer(scale):
    """`tf.contrib.layers.l2_regularizer(scale)`: `scale * sum(w**2) / 2`.

    Returns None for a zero scale, as the TF1 code passes no regulariser then.
    """
    return keras.regularizers.L2(scale / 2) if scale else None


class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' `BatchNormalization` on TensorFlow's fused kernel, as TF1's
    `batch_norm` ran it.

    Same arguments, variables (`gamma`, `beta`, `moving_mean`,
    `moving_variance`, in that order) and training semantics (batch
    statistics when called with `training=True` on a trainable layer, the
    moving ones otherwise), but for channels-last inputs of rank 4 (and of
    rank 2, viewed as `[N, 1, 1, C]`, as TF1 did) the normalisation, its
    gradient and the moving-average update are one `FusedBatchNormV3` op each.
    The moving variance then follows TF1's rule: it averages the kernel's
    unbiased batch variance (`n / (n - 1)` times the biased one, `n` the
    number of values per channel), while the output is normalised by the
    biased one. Other ranks, masks, renorm and channels-first inputs take
    Keras' path (TF1 did not fuse those either). float16 / bfloat16 inputs
    stay in their dtype with float32 statistics; float64 takes Keras' path.

    It serialises as `keras.layers.BatchNormalization` (same config and
    weights), so a saved network loads anywhere, as Keras' layer; the two
    agree in inference to float32 rounding.
    """

    FUSED_DTYPES = ("float16", "bfloat16", "float32")

    def _fusable(self, inputs, mask):
        rank = len(inputs.shape)
        axis = self.axis if self.axis >= 0 else self.axis + rank
        return (mask is None and not self.renorm and rank in (2, 4)
                and axis == rank - 1 and self.scale and self.center
                and tf.as_dtype(inputs.dtype).name in self.FUSED_DTYPES)

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        x = inputs
        if len(inputs.shape) == 2:
            x = tf.reshape(inputs, [-1, 1, 1, inputs.shape[-1]])
        training = bool(training) and self.trainable
        outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=tf.convert_to_tensor(self.gamma),
            offset=tf.convert_to_tensor(self.beta),
            mean=tf.convert_to_tensor(self.moving_mean),
            variance=tf.convert_to_tensor(self.moving_variance),
            epsilon=self.epsilon, data_format="NHWC", is_training=training,
            exponential_avg_factor=1.0 - self.momentum if training else 1.0)
        if training:
            # the kernel's own update: momentum * old + (1 - momentum) * batch
            self.moving_mean.assign(mean)
            self.moving_variance.assign(variance)
        return tf.reshape(outputs, tf.shape(inputs)) if x is not inputs else outputs


# Serialised under the public Keras name (see the class docstring): the
# class-to-name table Keras' serialiser consults for its own public classes.
api_export.REGISTERED_OBJS_TO_NAMES[BatchNormalization] = (
    api_export.get_name_from_symbol(keras.layers.BatchNormalization))


@keras.saving.register_keras_serializable(package="tf_kd")
class BatchNorm(BatchNormalization):
    """`tf.contrib.layers.batch_norm`: fused batch normalisation and an
    activation."""

    def __init__(self, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)

    def call(self, inputs, training=None, mask=None):
        return self.activation(super().call(inputs, training=training, mask=mask))

    def get_config(self):
        config = super().get_config()
        config["activation"] = keras.activations.serialize(self.activation)
        return config


def conv2d(filters, kernel_size, strides=1, name=None,
           weight_decay=WEIGHT_DECAY, **overrides):
    """`tcl.conv2d` under `ResNet_arg_scope` (padding SAME)."""
    args = dict(
        padding="same", use_bias=False, activation=None,
        kernel_initializer=variance_scaling_fan_out(
            filters * math.prod(_pair(kernel_size))),
        kernel_regularizer=l2_regularizer(weight_decay),
    )
    args.update(overrides)
    return keras.layers.Conv2D(filters, kernel_size, strides, name=name, **args)


def dense(units, name=None, weight_decay=WEIGHT_DECAY, **overrides):
    """`tcl.fully_connected` under `ResNet_arg_scope`."""
    args = dict(
        use_bias=False, activation=None,
        kernel_initializer=variance_scaling_fan_out(units),
        kernel_regularizer=l2_regularizer(weight_decay),
    )
    args.update(overrides)
    return keras.layers.Dense(units, name=name, **args)


def batch_norm_args(weight_decay=WEIGHT_DECAY):
    """Keyword arguments of `BatchNormalization` for the TF1 `batch_norm`,
    with the epsilon TF 1.x's fused kernel ran it with."""
    return dict(
        momentum=0.9, epsilon=FUSED_EPSILON, center=True, scale=True,
        gamma_regularizer=l2_regularizer(weight_decay),
        beta_regularizer=l2_regularizer(weight_decay),
    )


def batch_norm(name=None, weight_decay=WEIGHT_DECAY, activation="relu",
               **overrides):
    """`tcl.batch_norm` under `ResNet_arg_scope`."""
    args = batch_norm_args(weight_decay)
    args.update(overrides)
    return BatchNorm(activation=activation, name=name, **args)


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def leaky_relu(x):
    """`tf.nn.leaky_relu` (slope 0.2): `x > 0 ? x : 0.2 x`, and its gradient
    `g` or `0.2 g`, written as a select: TensorFlow's oneDNN graph rewrite
    fuses a convolution's bias with a following `LeakyRelu` although the
    gradient still reads the bias's output, and fails with an error line."""
    return tf.where(x > 0, x, x * 0.2)
