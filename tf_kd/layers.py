"""Keras layers with the defaults of the TF1 `ResNet_arg_scope`.

In the TF1 code every `tf.contrib.layers` call inside the network function,
the distillation modules included, inherits this scope:

- conv2d / fully_connected: no bias, no activation, weights drawn by
  `variance_scaling_initializer(mode='FAN_OUT')`, `l2_regularizer(weight_decay)`;
- batch_norm: scale and center, decay 0.9, epsilon 1e-5, ReLU activation,
  `l2_regularizer(weight_decay)` on gamma and beta.

The factories below return Keras layers with exactly these defaults; a caller
overrides an argument the way a TF1 call or inner `arg_scope` did.
"""

import math

import keras
from keras import ops

WEIGHT_DECAY = 5e-4


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


@keras.saving.register_keras_serializable(package="tf_kd")
class BatchNorm(keras.layers.BatchNormalization):
    """`tf.contrib.layers.batch_norm`: batch normalisation and an activation."""

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
    """Keyword arguments of `BatchNormalization` for the TF1 `batch_norm`."""
    return dict(
        momentum=0.9, epsilon=1e-5, center=True, scale=True,
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
    """`tf.nn.leaky_relu` (slope 0.2)."""
    return ops.leaky_relu(x, negative_slope=0.2)
