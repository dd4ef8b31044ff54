"""Multi-connection knowledge: features at several depths (TF1 `nets/Multiple.py`).

The modules below are built with TF1's effective arguments: as parts of the
network function they inherit `ResNet_arg_scope` (no bias, fan-out variance
scaling, L2 weight decay; batch norm with decay 0.9, epsilon 1e-5, run as
`layers.FUSED_EPSILON`, and L2 on gamma/beta), and their batch norms always
run in training mode (TF1 creates them outside the student's `is_training`
scope).
"""

import keras
import tensorflow as tf

from tf_kd import layers


def hint_maps(student_shapes, teacher_shapes):
    """FitNet's maps: a built 1x1 projection of the teacher feature to the
    student's width where they differ (TF1 `Guided/Map/fc`), else None."""
    maps = []
    for i, (s, t) in enumerate(zip(student_shapes, teacher_shapes)):
        hint_map = None
        if s[-1] != t[-1]:
            hint_map = layers.dense(s[-1], name=f"hint_map{i}")
            hint_map.build(t)
        maps.append(hint_map)
    return maps


def fitnet(student_feats, teacher_feats, maps=None):
    """Romero et al., "FitNets: hints for thin deep nets", ICLR 2015: the
    mean squared distance between features, summed over stages."""
    maps = maps or [None] * len(student_feats)
    return tf.add_n([tf.reduce_mean(tf.square(s - (m(t) if m is not None else t)))
                     for s, t, m in zip(student_feats, teacher_feats, maps)])


def attention_map(feature):
    """`mean_c f^2`, l2-normalised over the spatial positions."""
    return tf.math.l2_normalize(tf.reduce_mean(tf.square(feature), -1), [1, 2])


def attention_transfer(student_feats, teacher_feats, beta=1e3):
    """Zagoruyko & Komodakis, "Paying more attention to attention", ICLR
    2017: `beta / 2 * mean((Q_s - Q_t)^2)`, summed over stages."""
    return tf.add_n([tf.reduce_mean(tf.square(attention_map(s) - attention_map(t))) * beta / 2
                     for s, t in zip(student_feats, teacher_feats)])


@keras.saving.register_keras_serializable(package="tf_kd")
class Connector(keras.layers.Layer):
    """AB's connector: 1x1 convolution to the teacher's width, then batch
    norm (training mode, no activation)."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.conv = layers.conv2d(channels, 1, name="conv")
        self.bn = layers.batch_norm(name="bn", activation=None)

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, feature):
        return self.bn(self.conv(feature), training=True)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def activation_boundary(source, target, margin=1.0):
    """The alternative L2 criterion: `(s + m)^2` where the teacher neuron is
    off but `s > -m`, `(s - m)^2` where it is on but `s <= m`; summed per
    example, averaged over the batch."""
    off = tf.cast((source > -margin) & (target <= 0), source.dtype)
    on = tf.cast((source <= margin) & (target > 0), source.dtype)
    loss = tf.square(source + margin) * off + tf.square(source - margin) * on
    return tf.reduce_mean(tf.reduce_sum(tf.abs(loss), [1, 2, 3]))


def ab_distillation(student_feats, teacher_feats, connector_layers, margin=1.0,
                    weight=3e-3):
    """Heo et al., "Knowledge transfer via distillation of activation
    boundaries formed by hidden neurons", AAAI 2019: stage `i` weighted by
    `2**i` (TF1 divides by `2**-i`), the sum times `weight`."""
    return weight * tf.add_n([
        activation_boundary(c(s), t, margin) * 2.0 ** i
        for i, (s, t, c) in enumerate(zip(student_feats, teacher_feats, connector_layers))])


@keras.saving.register_keras_serializable(package="tf_kd")
class VIDRegressor(keras.layers.Layer):
    """Ahn et al., "Variational information distillation for knowledge
    transfer", CVPR 2019: the mean `mu(s)` (three 1x1 layers C*2, C*2, C with
    batch norm, ReLU between) and the per-channel variance
    `softplus(alpha) + 1` of a Gaussian over the teacher feature.
    `alpha` (initially 5) has no weight decay."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        widths = [2 * channels, 2 * channels, channels]
        self.fcs = [layers.dense(w, name=f"fc{i}") for i, w in enumerate(widths)]
        self.bns = [layers.batch_norm(name=f"bn{i}", activation="relu" if i < 2 else None)
                    for i in range(3)]

    def build(self, input_shape):
        shape = input_shape
        for fc, bn in zip(self.fcs, self.bns):
            fc.build(shape)
            shape = fc.compute_output_shape(shape)
            bn.build(shape)
        self.alpha = self.add_weight(
            shape=(1, 1, 1, self.channels), name="alpha",
            initializer=keras.initializers.Constant(5.0))

    def call(self, feature):
        for fc, bn in zip(self.fcs, self.bns):
            feature = bn(fc(feature), training=True)
        return feature

    def variance(self):
        return tf.math.softplus(self.alpha) + 1

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def per_stage(module, prefix, student_shapes, teacher_shapes):
    """One `module(teacher channels)` per stage, built on the student's
    feature shape (AB's connectors, VID's regressors)."""
    result = []
    for i, (s, t) in enumerate(zip(student_shapes, teacher_shapes)):
        layer = module(t[-1], name=f"{prefix}{i}")
        layer.build(s)
        result.append(layer)
    return result


def vid(student_feats, teacher_feats, regressors):
    """The negative Gaussian log-likelihood of the teacher feature under the
    regressor, `mean(log var + (t - mu)^2 / var) / 2`, summed over stages."""
    losses = []
    for s, t, regressor in zip(student_feats, teacher_feats, regressors):
        variance = regressor.variance()
        losses.append(tf.reduce_mean(tf.math.log(variance)
                                     + tf.square(t - regressor(s)) / variance) / 2)
    return tf.add_n(losses)
