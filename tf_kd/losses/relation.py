"""Relational knowledge: relations between examples (TF1 `nets/Relation.py`)."""

import keras
import tensorflow as tf

from tf_kd import layers
from tf_kd import svd as svd_ops


def huber(x, y):
    """Mean Huber loss with threshold 1."""
    error = tf.abs(x - y)
    return tf.reduce_mean(tf.where(error <= 1.0, tf.square(error) / 2, error - 0.5))


def distance_potential(x):
    """Pairwise distances divided by their mean over the positive ones."""
    square = tf.reduce_sum(tf.square(x), -1)
    product = tf.matmul(x, x, transpose_b=True)
    distance = tf.sqrt(tf.maximum(square[:, None] + square[None] - 2 * product, 1e-12))
    positive = tf.reduce_sum(tf.cast(distance > 0, distance.dtype))
    return distance / (tf.reduce_sum(distance) / positive + 1e-8)


def angle_potential(x):
    """Cosines of the angles formed by every triplet of examples."""
    e = tf.math.l2_normalize(x[None] - x[:, None], 2)
    return tf.matmul(e, e, transpose_b=True)


def rkd(student, teacher, weights=(25.0, 50.0)):
    """Park et al., "Relational knowledge distillation", CVPR 2019, on
    l2-normalised embeddings: `w_d * distance + w_a * angle` Huber losses
    (TF1 `ResNet.py` passes weights 25 and 50 and the pooled vectors)."""
    student = tf.math.l2_normalize(student, 1)
    teacher = tf.math.l2_normalize(teacher, 1)
    return (weights[0] * huber(distance_potential(student), distance_potential(teacher))
            + weights[1] * huber(angle_potential(student), angle_potential(teacher)))


# -- MHGD: Lee & Song, "Graph-based knowledge distillation by multi-head
# -- attention network", BMVC 2019.

def singular_vectors(student_feats, teacher_feats, num_student=4):
    """Per stage, the teacher's leading right singular vector and the
    student's vector aligned to it (out of its `num_student` leading ones),
    each `[B, D]` (TF1 `MHGD`'s `Compress_feature_map`)."""
    student_vectors, teacher_vectors = [], []
    for sfm, tfm in zip(student_feats, teacher_feats):
        v_t = teacher_singular_vector(tfm)
        _, _, v_s = svd_ops.svd_eid(sfm, num_student)
        v_s, _ = svd_ops.align_rsv(v_s, v_t[..., None])
        student_vectors.append(v_s[..., 0])
        teacher_vectors.append(v_t)
    return student_vectors, teacher_vectors


def teacher_singular_vector(feature):
    return svd_ops.svd_eid(feature, 1)[2][..., 0]


def drop_head(graph):
    """Keep, per example, the heads whose Gaussian noise is above its mean
    over the heads: `graph` is `[heads, B, B]`."""
    noise = tf.random.normal([tf.shape(graph)[0], tf.shape(graph)[1], 1], dtype=graph.dtype)
    keep = noise - tf.reduce_mean(noise, 0, keepdims=True) > 0
    return graph * tf.cast(keep, graph.dtype)


def kld(x, y):
    """`sum softmax(x) (log_softmax(x) - log_softmax(y))` over every row."""
    return tf.reduce_sum(tf.nn.softmax(x) * (tf.nn.log_softmax(x) - tf.nn.log_softmax(y)))


@keras.saving.register_keras_serializable(package="tf_kd")
class AttentionHead(keras.layers.Layer):
    """TF1 `Attention_head`: `heads` bilinear relations between the
    examples of a batch, `[heads, B, B]`. Sender and receiver are dense
    layers (no bias, no regulariser) with batch norm (no activation, no
    regulariser)."""

    def __init__(self, units, num_head=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.num_head = num_head
        width = units * num_head
        self.sender = layers.dense(width, name="Sfc", weight_decay=0)
        self.sender_bn = layers.batch_norm("Sbn", weight_decay=0, activation=None)
        self.receiver = layers.dense(width, name="Rfc", weight_decay=0)
        self.receiver_bn = layers.batch_norm("Rbn", weight_decay=0, activation=None)

    def build(self, input_shapes):
        for fc, bn, shape in [(self.sender, self.sender_bn, input_shapes[0]),
                              (self.receiver, self.receiver_bn, input_shapes[1])]:
            fc.build(shape)
            bn.build(fc.compute_output_shape(shape))

    def _heads(self, x):
        return tf.reshape(x, [-1, self.units, self.num_head])

    def call(self, inputs, training=False):
        key, query = inputs
        sender = self._heads(self.sender_bn(self.sender(key), training=training))
        receiver = self._heads(self.receiver_bn(self.receiver(query), training=training))
        return tf.matmul(tf.transpose(sender, [2, 0, 1]), tf.transpose(receiver, [2, 1, 0]))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_head": self.num_head}


@keras.saving.register_keras_serializable(package="tf_kd")
class Estimator(keras.layers.Layer):
    """TF1 `Estimator`: predicts a stage's vector from the previous stage's
    vectors of the batch, mixed by the (softmaxed, head-dropped) attention
    graphs: dense `fc0` + BN + ReLU, graph product per head, dense `fc1`
    with a zero-initialised bias, l2-normalised. No regularisers."""

    def __init__(self, units, hidden, num_head=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = hidden
        self.num_head = num_head
        self.fc0 = layers.dense(hidden, name="fc0", weight_decay=0)
        self.bn0 = layers.batch_norm("bn0", weight_decay=0)
        self.fc1 = layers.dense(units, name="fc1", weight_decay=0, use_bias=True,
                                bias_initializer="zeros")

    def build(self, input_shapes):
        self.fc0.build(input_shapes[0])
        self.bn0.build(self.fc0.compute_output_shape(input_shapes[0]))
        self.fc1.build((None, self.hidden * self.num_head))

    def call(self, inputs, training=False):
        x, graph = inputs
        batch = tf.shape(graph)[1]
        graph = tf.reshape(drop_head(tf.nn.softmax(graph)), [-1, batch])
        x = self.bn0(self.fc0(x), training=training)
        x = tf.reshape(tf.matmul(graph, x), [self.num_head, batch, self.hidden])
        x = tf.reshape(tf.transpose(x, [1, 0, 2]), [batch, self.num_head * self.hidden])
        return tf.math.l2_normalize(self.fc1(x), -1)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "hidden": self.hidden,
                "num_head": self.num_head}


@keras.saving.register_keras_serializable(package="tf_kd")
class MultiHeadGraph(keras.layers.Layer):
    """The multi-head attention network between two consecutive stages with
    vector sizes `prev_dim` and `dim` (TF1 `MHA{i}`)."""

    def __init__(self, dim, prev_dim, num_head=8, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.prev_dim = prev_dim
        self.num_head = num_head
        middle = (dim + prev_dim) // 2
        self.attention = AttentionHead(middle, num_head, name="attention")
        self.estimator = Estimator(dim, middle, num_head, name="estimator")

    def build(self, input_shape=None):
        self.attention.build([(None, self.dim), (None, self.prev_dim)])
        self.estimator.build([(None, self.prev_dim), (self.num_head, None, None)])

    def call(self, inputs):
        """The distillation graph `[heads, B, B]` of `(v, v_prev)`, with the
        batch norms in inference mode."""
        return self.attention(inputs, training=False)

    def estimator_loss(self, v, v_prev):
        """`mean(1 - cos(estimate, v))`: how well the attention graphs let
        the estimator predict `v` from the batch's `v_prev`."""
        graph = self.attention([v, v_prev], training=True)
        estimate = self.estimator([v_prev, graph], training=True)
        return tf.reduce_mean(1 - tf.reduce_sum(estimate * v, -1))

    def weight_penalty(self, scale=5e-4):
        """TF1's `scale * sum(v**2)` over the weights, biases, gammas and
        betas of the network (no division by 2)."""
        return scale * tf.add_n([tf.reduce_sum(tf.square(v)) for v in self.trainable_variables])

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "prev_dim": self.prev_dim,
                "num_head": self.num_head}


def mhgd(student_vectors, teacher_vectors, graphs):
    """MHGD's distillation loss: the KL divergence between the `tanh` of the
    student's and the teacher's attention graphs, summed over stage pairs."""
    return tf.add_n([
        kld(tf.tanh(graph([v_s, v_s_prev])), tf.tanh(graph([v_t, v_t_prev])))
        for graph, v_s, v_s_prev, v_t, v_t_prev in zip(
            graphs, student_vectors[1:], student_vectors[:-1],
            teacher_vectors[1:], teacher_vectors[:-1])])


def estimator_loss(teacher_vectors, graphs):
    """The init-phase loss of the attention networks, summed over pairs."""
    return tf.add_n([graph.estimator_loss(v, v_prev) for graph, v, v_prev
                     in zip(graphs, teacher_vectors[1:], teacher_vectors[:-1])])
