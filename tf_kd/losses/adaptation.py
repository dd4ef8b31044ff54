"""Knowledge adaptation (He et al., "Knowledge adaptation for efficient
semantic segmentation", CVPR 2019), in the paper's notation: `phi_t`, `phi_s`
the teacher's and the student's last feature maps, `E` / `D` the encoder /
decoder of an auto-encoder of `phi_t`, `C_f` the student's feature adapter.

- Knowledge translation: the auto-encoder, trained alone first on
  `||phi_t - D(E(phi_t))||^2 + alpha ||E(phi_t)||_1`, then frozen; its code
  `E(phi_t)` is the teacher's knowledge.
- Adaptation: `L_adapt = 1/|I| sum_{j in I} || E(phi_t)^j / ||E(phi_t)^j||_q
  - C_f(phi_s)^j / ||C_f(phi_s)^j||_q ||_p` over the set `I` of all positions.
- Affinity distillation: `L_aff`, the l2 distance between the teacher's and
  the student's affinity matrices (cosine similarity of every pair of
  positions of `phi`, spatially normalised).

Constants: the notes write the code penalty `alpha` as "10e-7" and the
auto-encoder's "large weight decay" as "10e-4", in the same rendering as the
teacher's "4x10e-5" (DeepLab's 4e-5), i.e. powers of ten: `alpha = 1e-7`,
weight decay `1e-4`.

p and q: the notes say only that they are "different norm types" and that
the features are normalised before matching. KA's translator / adapter pair
re-casts factor transfer's paraphraser / translator (Kim et al., NeurIPS
2018), whose loss has this very form with q = 2 and p = 1; this port takes
those (torchdistill's KTALoss defaults to the same), and, as the TF1 code of
that formula (`response.factor_transfer`), normalises each position over the
channels and averages `|.|` over positions and channels (the 1/|I| of the
formula). Summing over the channels instead makes `beta L_adapt` grow with
the width: on the FCN pair at width 0.25 it was over a hundred times the
cross-entropy and the student ended 10 points of pixel accuracy below the
undistilled one.

Where the teacher's and the student's maps differ in size, the teacher's side
(code or feature) is resized bilinearly to the student's, so the student's own
quantities enter the losses unchanged (the notes: features "resized to the
same size"; they do not say which way).
"""

import keras
import tensorflow as tf

from tf_kd import layers

ALPHA = 1e-7                  # weight of the code's l1 norm
AUTO_ENCODER_DECAY = 1e-4     # the auto-encoder's TF1 `l2_regularizer` scale
BETA = 50.0                   # weight of L_adapt
GAMMA = 1.0                   # weight of L_aff


def _conv2d_transpose(filters, name, weight_decay, activation):
    """3x3, stride-2 transposed convolution with the `layers.conv2d`
    initialiser (fan-out truncated normal) and L2 regulariser, and a bias."""
    return keras.layers.Conv2DTranspose(
        filters, 3, 2, padding="same", activation=activation, use_bias=True,
        kernel_initializer=layers.variance_scaling_fan_out(filters * 9),
        kernel_regularizer=layers.l2_regularizer(weight_decay),
        bias_initializer="zeros", name=name)


@keras.saving.register_keras_serializable(package="tf_kd")
class AutoEncoder(keras.layers.Layer):
    """The knowledge translator: three 3x3 stride-2 convolutions (`E`) and
    three symmetric stride-2 transposed convolutions (`D`), every layer as wide
    as the teacher feature, ReLU after each but the last decoder layer.

    The code ends in a ReLU like the adapter it is matched with (conv + BN +
    ReLU). No batch norm (the notes name none), so the frozen encoder is a
    fixed function. Initialiser: `layers.conv2d`'s fan-out truncated normal;
    biases zero; L2 weight decay `AUTO_ENCODER_DECAY` on the kernels (the
    paper's auto-encoder decay, TF1 `l2_regularizer` sense).
    """

    def __init__(self, weight_decay=AUTO_ENCODER_DECAY, **kwargs):
        super().__init__(**kwargs)
        self.weight_decay = weight_decay

    def build(self, input_shape):
        channels = input_shape[-1]
        self.encoder = [layers.conv2d(channels, 3, 2, f"conv{i}", self.weight_decay,
                                      use_bias=True, bias_initializer="zeros",
                                      activation="relu")
                        for i in range(3)]
        self.decoder = [_conv2d_transpose(channels, f"convt{i}", self.weight_decay,
                                          "relu" if i < 2 else None)
                        for i in range(3)]
        shape = input_shape
        for layer in self.encoder + self.decoder:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def encode(self, feature):
        """The code `E(phi_t)`, 8 times smaller on each side."""
        for layer in self.encoder:
            feature = layer(feature)
        return feature

    def decode(self, code):
        """The reconstruction `D(code)`."""
        for layer in self.decoder:
            code = layer(code)
        return code

    def call(self, feature):
        return self.decode(self.encode(feature))

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.weight_decay}


@keras.saving.register_keras_serializable(package="tf_kd")
class FeatureAdapter(keras.layers.Layer):
    """`C_f`: a 3x3 convolution, stride 1, padding 1, to the code's width,
    then batch norm and ReLU (the paper). `layers.conv2d` / `batch_norm`
    defaults (fan-out init, no bias, L2 weight decay; decay 0.9, epsilon
    `layers.FUSED_EPSILON`);
    the batch norm always runs in training mode, as the other methods'
    modules (it only exists while training)."""

    def __init__(self, channels, weight_decay=layers.WEIGHT_DECAY, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.weight_decay = weight_decay
        self.conv = layers.conv2d(channels, 3, 1, "conv", weight_decay)
        self.bn = layers.batch_norm("bn", weight_decay)

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, feature):
        return self.bn(self.conv(feature), training=True)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "weight_decay": self.weight_decay}


def auto_encoder_loss(feature, reconstruction, code, alpha=ALPHA):
    """`||phi_t - D(E(phi_t))||^2 + alpha ||E(phi_t)||_1`: the squared error
    averaged over the elements (so that the paper's learning rate 0.1 is
    stable whatever the map size) plus `alpha` times each image's code l1
    norm, averaged over the batch."""
    return (tf.reduce_mean(tf.square(feature - reconstruction))
            + alpha * tf.reduce_mean(tf.reduce_sum(tf.abs(code), [1, 2, 3])))


def resize_to(feature, reference):
    """`feature` resized bilinearly to the spatial size of `reference`."""
    size = reference.shape[1:3]
    if feature.shape[1:3] == size:
        return feature
    return tf.image.resize(feature, size, "bilinear")


def adaptation_loss(code, adapted):
    """`L_adapt` with q = 2, p = 1: at every position (and image) the code and
    the adapted student feature are l2-normalised over the channels; the mean
    absolute difference over positions and channels."""
    code = tf.math.l2_normalize(resize_to(code, adapted), -1)
    adapted = tf.math.l2_normalize(adapted, -1)
    return tf.reduce_mean(tf.abs(code - adapted))


def affinity(feature):
    """`A_ij = phi_i . phi_j / (||phi_i||_2 ||phi_j||_2) / m` for the `m = HW`
    positions: [B, H, W, C] -> [B, m, m]. The `1 / m` is the spatial
    normalisation, which makes `||A_s - A_t||_2` the root mean square of the
    cosine differences, whatever the resolution."""
    m = feature.shape[1] * feature.shape[2]
    vectors = tf.math.l2_normalize(tf.reshape(feature, [-1, m, feature.shape[3]]), -1)
    return tf.matmul(vectors, vectors, transpose_b=True) / m


def affinity_loss(student_feature, teacher_feature):
    """`L_aff`: per image the l2 (Frobenius) norm of `A_s - A_t`, averaged
    over the batch; the teacher feature is resized to the student's size."""
    difference = affinity(student_feature) - affinity(resize_to(teacher_feature,
                                                                 student_feature))
    squares = tf.reduce_sum(tf.square(difference), [1, 2])
    # the floor keeps the gradient finite where both matrices are equal
    return tf.reduce_mean(tf.sqrt(tf.maximum(squares, 1e-12)))
