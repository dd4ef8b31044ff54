"""Response-based knowledge (TF1 `nets/Response.py`), and beyond TF1 the
logit losses of RepDistiller (KD), mdistiller (DKD), DIST and logit
standardisation."""

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


# -- Beyond TF1: the logit losses of the post-2019 references.

def standardize(logits):
    """Sun et al., "Logit standardization in knowledge distillation", CVPR
    2024 (sunshangquan/logit-standardization-KD
    f6e5aa5172bad618e801163c3385322eea673754, `mdistiller/distillers/KD.py`
    `normalize`): each row's logits minus their mean, divided by `1e-7` plus
    their standard deviation (PyTorch's `std`, with Bessel's correction)."""
    mean = tf.reduce_mean(logits, -1, keepdims=True)
    centred = logits - mean
    count = tf.cast(tf.shape(logits)[-1], logits.dtype)
    std = tf.sqrt(tf.reduce_sum(tf.square(centred), -1, keepdims=True) / (count - 1))
    return centred / (1e-7 + std)


def kd(student_logits, teacher_logits, temperature=4.0, logit_standardization=False):
    """Hinton et al. as RepDistiller's `DistillKL` (HobbitLong/RepDistiller
    b84f547c5db6a35318d4671d7d5c4de74c822403, `distiller_zoo/KD.py`):
    `T^2 KL(softmax(t / T) || softmax(s / T))`, batch mean; with
    `logit_standardization` both logits are `standardize`d first (the
    reference's `kd_loss(..., logit_stand)`)."""
    if logit_standardization:
        student_logits, teacher_logits = standardize(student_logits), standardize(teacher_logits)
    return temperature ** 2 * soft_logits(student_logits, teacher_logits, temperature)


# DKD's reference removes the target class from the non-target distribution
# by subtracting 1000 from its (temperature-scaled) logit; exp(-1000) is 0 in
# float32.
_TARGET_OFFSET = 1000.0


def _binary_log_probabilities(scaled_logits, target):
    """`log [p_target, 1 - p_target]` `[B, 2]` of `softmax(scaled_logits)`,
    from log-sum-exps (no log of a probability that may round to 0)."""
    log_total = tf.reduce_logsumexp(scaled_logits, -1)
    log_target = tf.reduce_sum(scaled_logits * target, -1) - log_total
    log_other = tf.reduce_logsumexp(scaled_logits - _TARGET_OFFSET * target, -1) - log_total
    return tf.stack([log_target, log_other], -1)


def dkd_parts(student_logits, teacher_logits, labels, temperature=4.0,
              logit_standardization=False):
    """Zhao et al., "Decoupled knowledge distillation", CVPR 2022
    (megvii-research/mdistiller a08d46f10d6102bd6e3f258ca5ac880b020ea259,
    `mdistiller/distillers/DKD.py` `dkd_loss`): `(TCKD, NCKD)`, each times
    T^2 and averaged over the batch.

    TCKD is the KL divergence between the teacher's and the student's binary
    distributions `[p_target, 1 - p_target]` of `softmax(z / T)`; NCKD the KL
    divergence between their distributions over the non-target classes
    (`softmax(z / T)` renormalised without the target class). Per example,
    `KL(p_t || p_s) = TCKD + (1 - p_t[target]) NCKD`. `logit_standardization`:
    the logits `standardize`d first (logit-standardization-KD's `dkd_loss`)."""
    if logit_standardization:
        student_logits, teacher_logits = standardize(student_logits), standardize(teacher_logits)
    target = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(student_logits)[-1],
                        dtype=student_logits.dtype)
    student, teacher = student_logits / temperature, teacher_logits / temperature
    log_b_s = _binary_log_probabilities(student, target)
    log_b_t = _binary_log_probabilities(teacher, target)
    tckd = tf.reduce_mean(tf.reduce_sum(tf.exp(log_b_t) * (log_b_t - log_b_s), -1))
    nckd = kl_divergence(teacher - _TARGET_OFFSET * target, student - _TARGET_OFFSET * target)
    return temperature ** 2 * tckd, temperature ** 2 * nckd


def dkd(student_logits, teacher_logits, labels, alpha=1.0, beta=8.0, temperature=4.0,
        logit_standardization=False):
    """DKD: `alpha TCKD + beta NCKD` (`dkd_parts`); mdistiller's CIFAR-100
    defaults alpha 1, beta 8, T 4."""
    tckd, nckd = dkd_parts(student_logits, teacher_logits, labels, temperature,
                           logit_standardization)
    return alpha * tckd + beta * nckd


def pearson(a, b, axis, eps=1e-8):
    """The Pearson correlation of `a` and `b` along `axis`: the cosine of
    the centred vectors, `eps` added to the product of their norms (DIST's
    `pearson_correlation`)."""
    a = a - tf.reduce_mean(a, axis, keepdims=True)
    b = b - tf.reduce_mean(b, axis, keepdims=True)
    return tf.reduce_sum(a * b, axis) / (tf.norm(a, axis=axis) * tf.norm(b, axis=axis) + eps)


def dist(student_logits, teacher_logits, beta=1.0, gamma=1.0, tau=4.0):
    """Huang et al., "Knowledge distillation from a stronger teacher",
    NeurIPS 2022 (hunto/image_classification_sota
    6f7a70a1dd57fd88413d83909d3d53243068f701, `lib/models/losses/dist_kd.py`):
    with `Y = softmax(z / tau)` `[B, classes]`, the inter-class relation
    `1 - mean_b pearson(Y_s[b], Y_t[b])` (each example's class scores) and
    the intra-class relation `1 - mean_c pearson(Y_s[:, c], Y_t[:, c])`
    (each class's scores over the batch); `tau^2 (beta inter + gamma
    intra)`. The reference's CIFAR-100 setting (`dist_t4`) is beta = gamma
    = 1, tau = 4. Dense predictions `[B, H, W, classes]`: each pixel counts
    as an example."""
    classes = tf.shape(student_logits)[-1]
    y_s = tf.reshape(tf.nn.softmax(student_logits / tau), [-1, classes])
    y_t = tf.reshape(tf.nn.softmax(teacher_logits / tau), [-1, classes])
    inter = 1 - tf.reduce_mean(pearson(y_s, y_t, 1))
    intra = 1 - tf.reduce_mean(pearson(y_s, y_t, 0))
    return tau ** 2 * (beta * inter + gamma * intra)
