"""Multi-connection knowledge: features at several depths (TF1 `nets/Multiple.py`);
beyond TF1, ReviewKD's attention-based fusion and hierarchical context loss.

The TF1 methods' modules are built with TF1's effective arguments: as parts of the
network function they inherit `ResNet_arg_scope` (no bias, fan-out variance
scaling, L2 weight decay; batch norm with decay 0.9, epsilon 1e-5, run as
`layers.FUSED_EPSILON`, and L2 on gamma/beta), and their batch norms always
run in training mode (TF1 creates them outside the student's `is_training`
scope).
"""

import keras
import numpy as np
import tensorflow as tf

from nets import torch_layers as tl
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


# -- Beyond TF1: ReviewKD (Chen et al., "Distilling knowledge via knowledge
# review", CVPR 2021), as dvlab-research/ReviewKD
# cede6ea6387ae9b6127de0e561507177bf19c11e `CIFAR-100/model/reviewkd.py`
# (mdistiller a08d46f10d6102bd6e3f258ca5ac880b020ea259
# `mdistiller/distillers/ReviewKD.py` is the same code).

def as_map(feature):
    """A pooled vector `[B, C]` as the `[B, 1, 1, C]` map the reference
    feeds its ABF (`pooled_feat.unsqueeze(-1).unsqueeze(-1)`); maps unchanged."""
    return feature[:, None, None, :] if len(feature.shape) == 2 else feature


def nearest_resize(x, size):
    """`F.interpolate(x, size, mode="nearest")`: output pixel `i` takes
    input pixel `floor(i * in / out)` (not Keras' half-pixel centres)."""
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    return tf.raw_ops.ResizeNearestNeighbor(images=x, size=list(size), align_corners=False,
                                            half_pixel_centers=False)


@keras.saving.register_keras_serializable(package="tf_kd")
class ABF(keras.layers.Layer):
    """ReviewKD's attention-based fusion (`ABF`): the student feature through
    a 1x1 convolution to `mid_channels` and batch norm; where `fuse`, the
    deeper level's residual, resized to it (nearest), is blended in by two
    sigmoid attention maps of a 1x1 convolution (with bias) of both; the
    result is resized to the teacher's size and becomes, through a 3x3
    convolution to `out_channels` (the teacher's width) and batch norm, the
    output; the blend is the residual handed to the next, shallower level.

    Initialised as the reference: both convolutions `kaiming_uniform_(a=1)`
    (uniform in `±sqrt(3 / fan_in)`), the attention convolution PyTorch's
    default, batch norms `nn.BatchNorm2d`'s; every parameter under the weight
    decay of the reference's SGD (here TF1's `l2_regularizer`)."""

    def __init__(self, mid_channels, out_channels, fuse, weight_decay=layers.WEIGHT_DECAY,
                 **kwargs):
        super().__init__(**kwargs)
        self.mid_channels, self.out_channels, self.fuse = mid_channels, out_channels, fuse
        self.weight_decay = weight_decay
        decay = layers.l2_regularizer(weight_decay)
        kaiming_uniform = keras.initializers.VarianceScaling(1.0, "fan_in", "uniform")
        self.conv1 = keras.layers.Conv2D(mid_channels, 1, use_bias=False, name="conv1",
                                         kernel_initializer=kaiming_uniform,
                                         kernel_regularizer=decay)
        self.conv2 = keras.layers.Conv2D(out_channels, 3, padding="same", use_bias=False,
                                         name="conv2", kernel_initializer=kaiming_uniform,
                                         kernel_regularizer=decay)
        self.bn1, self.bn2 = [layers.BatchNormalization(
            momentum=tl.MOMENTUM, epsilon=tl.EPSILON, gamma_regularizer=decay,
            beta_regularizer=decay, name=name) for name in ("bn1", "bn2")]
        default = tl.pytorch_default(2 * mid_channels, 2)
        self.att_conv = keras.layers.Conv2D(
            2, 1, activation="sigmoid", name="att_conv", kernel_initializer=default,
            bias_initializer=default, kernel_regularizer=decay,
            bias_regularizer=decay) if fuse else None

    def build(self, input_shape):
        self.conv1.build(input_shape)
        mid_shape = (*input_shape[:-1], self.mid_channels)
        self.bn1.build(mid_shape)
        self.conv2.build(mid_shape)
        self.bn2.build((*input_shape[:-1], self.out_channels))
        if self.att_conv is not None:
            self.att_conv.build((*input_shape[:-1], 2 * self.mid_channels))

    def call(self, x, residual=None, out_size=None, training=False):
        """`(output, residual)` of the student feature `x` `[B, H, W, C]`
        and the deeper level's residual; `out_size` is the teacher's (H, W)."""
        x = self.bn1(self.conv1(x), training=training)
        if self.att_conv is not None:
            residual = nearest_resize(residual, x.shape[1:3])
            attention = self.att_conv(tf.concat([x, residual], -1))
            x = x * attention[..., :1] + residual * attention[..., 1:]
        x = nearest_resize(x, out_size)
        return self.bn2(self.conv2(x), training=training), x

    def get_config(self):
        return {**super().get_config(), "mid_channels": self.mid_channels,
                "out_channels": self.out_channels, "fuse": self.fuse,
                "weight_decay": self.weight_decay}


def review_fusions(student_shapes, teacher_shapes, max_mid_channels=512):
    """ReviewKD's ABFs, shallow to deep, one per (student, teacher) feature
    shape pair (`[B, C]` or `[B, H, W, C]`), built: `mid_channels =
    min(512, C of the deepest student feature)`, each to its teacher
    feature's width, all but the deepest fusing a residual."""
    mid_channels = min(max_mid_channels, student_shapes[-1][-1])
    abfs = []
    for i, (s, t) in enumerate(zip(student_shapes, teacher_shapes)):
        abf = ABF(mid_channels, t[-1], fuse=i < len(student_shapes) - 1, name=f"abf{i}")
        abf.build(tuple(s) if len(s) == 4 else (s[0], 1, 1, s[-1]))
        abfs.append(abf)
    return abfs


def review(student_feats, abfs, out_sizes, training=False):
    """ReviewKD's review of the student features (shallow to deep, the
    pooled one last): from the deepest up, each level's ABF fuses the
    residual of the level below it; the outputs, shallow to deep, are to
    match the teacher's features, of sizes `out_sizes`."""
    outputs, residual = [], None
    for feature, abf, size in reversed(list(zip(student_feats, abfs, out_sizes))):
        output, residual = abf(as_map(feature), residual=residual, out_size=size,
                               training=training)
        outputs.insert(0, output)
    return outputs


def adaptive_average_pool(x, size):
    """`F.adaptive_avg_pool2d(x, (size, size))` of `[B, H, W, C]` (`size`
    may be a pair `(height, width)`): output row `i` averages input rows
    `floor(i H / size)` to `ceil((i + 1) H / size) - 1`, and the same for
    columns."""
    def bins(n, size):
        weights = np.zeros([size, n], tf.as_dtype(x.dtype).as_numpy_dtype)
        for i in range(size):
            start, end = i * n // size, -(-(i + 1) * n // size)
            weights[i, start:end] = 1 / (end - start)
        return weights

    height, width = (size, size) if isinstance(size, int) else size
    return tf.einsum("ih,bhwc,jw->bijc", bins(x.shape[1], height), x, bins(x.shape[2], width))


def hcl(student_feats, teacher_feats, levels=(4, 2, 1)):
    """ReviewKD's hierarchical context loss `hcl`: per pair of features
    (same shape), the mean squared error plus, for each pyramid level `l`
    of 4, 2, 1 below the height, the mean squared error of the `l x l`
    adaptive average pools weighted 1/2, 1/4, 1/8 (halved at each level
    used), over the sum of the weights; summed over the pairs."""
    total = 0.0
    for s, t in zip(student_feats, teacher_feats):
        loss, weight, weights = tf.reduce_mean(tf.square(s - t)), 1.0, 1.0
        for level in levels:
            if level >= s.shape[1]:
                continue
            weight /= 2
            loss += weight * tf.reduce_mean(tf.square(
                adaptive_average_pool(s, level) - adaptive_average_pool(t, level)))
            weights += weight
        total += loss / weights
    return total
