"""Response-based knowledge (TF1 `nets/Response.py`)."""

import keras
import tensorflow as tf

from tf_kd import layers


def kl_divergence(p_logits, q_logits):
    """Mean over the batch of `KL(softmax(p) || softmax(q))`."""
    return tf.reduce_mean(tf.reduce_sum(
        tf.nn.softmax(p_logits) * (tf.nn.log_softmax(p_logits) - tf.nn.log_softmax(q_logits)),
        axis=-1))


def soft_logits(student_logits, teacher_logits, temperature=4.0):
    """Hinton et al., "Distilling the knowledge in a neural network", 2015:
    `KL(softmax(t / T) || softmax(s / T))`, batch mean, without T^2 (TF1;
    `ResNet.py` passes T = 4)."""
    return kl_divergence(teacher_logits / temperature, student_logits / temperature)


def dml(student_logits, teacher_logits):
    """Zhang et al., "Deep mutual learning", CVPR 2018: the symmetric KL
    divergence, halved."""
    return (kl_divergence(teacher_logits, student_logits)
            + kl_divergence(student_logits, teacher_logits)) / 2


def _factor_convs(channels, rate, weight_decay, prefix):
    """The three convolutions shared by the paraphraser's encoder and the
    translator: D*r (3x3), D*r^2 (3x3, stride 1/r), D*r^3 (3x3, linear);
    zero-initialised biases, leaky ReLU (TF1 `Factor_Transfer` scope)."""
    stride = int(1 / rate)
    specs = [(int(channels * rate), 1, layers.leaky_relu),
             (int(channels * rate ** 2), stride, layers.leaky_relu),
             (int(channels * rate ** 3), 1, None)]
    return [layers.conv2d(filters, 3, s, f"{prefix}conv{i}", weight_decay,
                          use_bias=True, bias_initializer="zeros", activation=act)
            for i, (filters, s, act) in enumerate(specs)]


@keras.saving.register_keras_serializable(package="tf_kd")
class Paraphraser(keras.layers.Layer):
    """Kim et al., "Paraphrasing complex network: network compression via
    factor transfer", NeurIPS 2018: an auto-encoder of the teacher feature.

    Effective TF1 arguments: the convolutions inherit the fan-out variance
    scaling initialiser, have zero-initialised biases and leaky ReLU (the last
    encoder one none) and no regulariser; the transposed convolutions are
    outside `ResNet_arg_scope`, so Glorot-uniform, zero biases, leaky ReLU.
    """

    def __init__(self, rate=0.5, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate

    def build(self, input_shape):
        channels = input_shape[-1]
        self.encoder = _factor_convs(channels, self.rate, 0.0, "")
        stride = int(1 / self.rate)
        self.decoder = [
            keras.layers.Conv2DTranspose(
                filters, 3, s, padding="same", activation=layers.leaky_relu,
                kernel_initializer="glorot_uniform", bias_initializer="zeros",
                name=f"convt{i}")
            for i, (filters, s) in enumerate([(int(channels * self.rate ** 2), 1),
                                              (int(channels * self.rate), stride),
                                              (channels, 1)])]
        shape = input_shape
        for layer in self.encoder + self.decoder:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def encode(self, feature):
        for layer in self.encoder:
            feature = layer(feature)
        return feature

    def factor(self, feature):
        """The teacher factor: the code, l2-normalised over channels."""
        return tf.math.l2_normalize(self.encode(feature), -1)

    def call(self, feature):
        """The reconstruction of `feature`."""
        x = layers.leaky_relu(self.encode(feature))
        for layer in self.decoder:
            x = layer(x)
        return x

    def weight_penalty(self, scale=5e-4):
        """TF1 init-phase penalty: `scale * sum(w**2)` over the kernels."""
        return scale * tf.add_n([tf.reduce_sum(tf.square(layer.kernel))
                                 for layer in self.encoder + self.decoder])

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package="tf_kd")
class Translator(keras.layers.Layer):
    """The student's side of factor transfer: three convolutions like the
    paraphraser's encoder, sized by the teacher's channels, l2-normalised.

    Outside the paraphraser's scope, its kernels keep TF1's L2 weight decay.
    """

    def __init__(self, teacher_channels, rate=0.5,
                 weight_decay=layers.WEIGHT_DECAY, **kwargs):
        super().__init__(**kwargs)
        self.teacher_channels = teacher_channels
        self.rate = rate
        self.weight_decay = weight_decay

    def build(self, input_shape):
        self.convs = _factor_convs(self.teacher_channels, self.rate,
                                   self.weight_decay, "")
        shape = input_shape
        for layer in self.convs:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, feature):
        for layer in self.convs:
            feature = layer(feature)
        return tf.math.l2_normalize(feature, -1)

    def get_config(self):
        return {**super().get_config(), "teacher_channels": self.teacher_channels,
                "rate": self.rate, "weight_decay": self.weight_decay}


def reconstruction_loss(feature, reconstruction):
    """The paraphraser's L1 loss (TF1 `Para_loss`)."""
    return tf.reduce_mean(tf.abs(feature - reconstruction))


def factor_transfer(student_factor, teacher_factor):
    """`mean |F_T - F_S|`; TF1 trains the student with 500 times it."""
    return tf.reduce_mean(tf.abs(teacher_factor - student_factor))
