"""Relational knowledge: relations between the examples of a batch (TF1
`nets/Relation.py`): RKD and MHGD; beyond TF1, RepDistiller's PKT, SP, CC and
CRD, and IRG.

MHGD (Seunghyun Lee and Byung Cheol Song, "Graph-based knowledge
distillation by multi-head attention network", BMVC 2019) in brief:

1. Each stage's feature map is compressed, as in KD-SVD, to its leading
   right singular vector: the teacher's one (`svd_eid(f, 1)`), the student's
   the one of its four leading vectors closest to the teacher's, sign-aligned
   (`singular_vectors`). A batch gives, per stage, `V in R^{B x D}`.
2. For each pair of consecutive stages a multi-head attention network
   (`MultiHeadGraph`) is first trained on the teacher alone: its attention
   heads relate the backend set `V_{i-1}` (query) to the frontend set `V_i`
   (key), `G = [heads, B, B]` (`AttentionHead`), and an `Estimator` must
   rebuild `V_i` from `V_{i-1}` mixed by the softmaxed graphs, loss
   `mean(1 - cos)` (`estimator_loss`, `mha_loss`).
3. The student then trains on `sum_pairs KL(softmax(tanh G_S) ||
   softmax(tanh G_T))` between the graphs the frozen attention heads give
   for its vectors and the teacher's (`mhgd`).

Layer arguments follow TF1, where everything runs under `ResNet_arg_scope`
and the MHGD `arg_scope`s remove the regularisers: dense layers without bias
(except the estimator's `fc1`, zero-initialised bias) or activation, the TF1
fan-out initialiser, batch norms with decay 0.9, epsilon 1e-5 (run as
`layers.FUSED_EPSILON`), scale and center, and no L2 term in `losses`.
"""

import math

import keras
import tensorflow as tf

from tf_kd import layers
from tf_kd import svd as svd_ops
from tf_kd.losses import multiple


# -- RKD: Park et al., "Relational knowledge distillation", CVPR 2019.

def huber(x, y):
    """Mean Huber loss with threshold 1 (TF1 `Huber_loss`)."""
    error = tf.abs(x - y)
    return tf.reduce_mean(tf.where(error <= 1.0, tf.square(error) / 2, error - 0.5))


def distance_potential(x):
    """Pairwise Euclidean distances `[B, B]` (squared distance floored at
    1e-12), divided by their mean over the positive ones plus 1e-8."""
    square = tf.reduce_sum(tf.square(x), -1)
    product = tf.matmul(x, x, transpose_b=True)
    distance = tf.sqrt(tf.maximum(square[:, None] + square[None] - 2 * product, 1e-12))
    positive = tf.reduce_sum(tf.cast(distance > 0, distance.dtype))
    return distance / (tf.reduce_sum(distance) / positive + 1e-8)


def angle_potential(x):
    """`[B, B, B]`: entry `[i, j, k]` is the cosine between `x_j - x_i` and
    `x_k - x_i` (0 where a difference vanishes)."""
    e = tf.math.l2_normalize(x[None] - x[:, None], 2)
    return tf.matmul(e, e, transpose_b=True)


def rkd(student, teacher, weights=(25.0, 50.0)):
    """RKD on embeddings `[B, C]` (TF1 `Relation.RKD`): both l2-normalised,
    `weights[0] * huber(distance potentials) + weights[1] * huber(angle
    potentials)`. TF1 `ResNet.py` passes the pooled vectors and `(25, 50)`
    (the function's own default there is `(100, 200)`). The teacher needs no
    stop-gradient: nothing trains it."""
    student = tf.math.l2_normalize(student, 1)
    teacher = tf.math.l2_normalize(teacher, 1)
    distance = huber(distance_potential(student), distance_potential(teacher))
    angle = huber(angle_potential(student), angle_potential(teacher))
    return weights[0] * distance + weights[1] * angle


# -- MHGD: the singular vectors.

def mhgd_vectors(feats, n):
    """The `n` leading right singular vectors `[B, D, n]` of each feature
    map, l2-normalised (`svd_eid`, TF1 `Compress_feature_map`)."""
    return [svd_ops.svd_eid(f, n)[2] for f in feats]


def teacher_singular_vector(feature):
    """The teacher's leading right singular vector of a feature map, `[B, D]`."""
    return mhgd_vectors([feature], 1)[0][..., 0]


def singular_vectors(student_feats, teacher_feats, num_student=4):
    """Per stage, `(student, teacher)` vectors `[B, D]`: the teacher's
    leading right singular vector, and the one of the student's
    `num_student` leading ones with the largest |cosine| to it, with its
    sign (`align_rsv`)."""
    students, teachers = [], []
    for v_s, v_t in zip(mhgd_vectors(student_feats, num_student),
                        mhgd_vectors(teacher_feats, 1)):
        v_s, v_t = svd_ops.align_rsv(v_s, v_t)
        students.append(v_s[..., 0])
        teachers.append(v_t[..., 0])
    return students, teachers


# -- MHGD: the multi-head attention network.

def drop_head(graph, seed=None):
    """TF1 `drop_head` on `graph` `[heads, B, B]`: per example, a Gaussian
    noise per head, and the heads whose noise exceeds the mean over the
    heads keep their row of the graph, the others are zeroed. At least one
    head survives per example (unless all noises tie). With a stateless
    `seed` (shape [2]) the noise is a function of it, so that a resumed run
    draws what the uninterrupted one drew."""
    shape = tf.stack([tf.shape(graph)[0], tf.shape(graph)[1], 1])
    noise = (tf.random.normal(shape, dtype=graph.dtype) if seed is None
             else tf.random.stateless_normal(shape, seed, dtype=graph.dtype))
    keep = noise - tf.reduce_mean(noise, 0, keepdims=True) > 0
    return graph * tf.cast(keep, graph.dtype)


def kld(x, y):
    """TF1 `kld_loss`: `sum softmax(x) * (log_softmax(x) - log_softmax(y))`,
    softmax over the last axis, summed over everything (`KL(p_x || p_y)`
    per row)."""
    return tf.reduce_sum(tf.nn.softmax(x) * (tf.nn.log_softmax(x) - tf.nn.log_softmax(y)))


def _mha_dense(units, name, **overrides):
    return layers.dense(units, name=name, weight_decay=0, **overrides)


def _mha_batch_norm(name, activation=None):
    return layers.batch_norm(name, weight_decay=0, activation=activation)


@keras.saving.register_keras_serializable(package="tf_kd")
class AttentionHead(keras.layers.Layer):
    """TF1 `Attention_head`: `num_head` relations between the examples of a
    batch, `[num_head, B, B]`.

    The key (frontend vectors `[B, D_key]`) goes through the sender, dense
    `Sfc` + batch norm `Sbn`, the query (backend vectors) through the
    receiver, `Rfc` + `Rbn`, each to `units * num_head` features read as
    `[B, units, num_head]`; head `h`'s graph is `G[h, i, j] = sender[i, :, h]
    . receiver[j, :, h]`.
    """

    def __init__(self, units, num_head=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.num_head = num_head
        self.sender = _mha_dense(units * num_head, "Sfc")
        self.sender_bn = _mha_batch_norm("Sbn")
        self.receiver = _mha_dense(units * num_head, "Rfc")
        self.receiver_bn = _mha_batch_norm("Rbn")

    def build(self, input_shape):
        key_shape, query_shape = input_shape
        for fc, bn, shape in [(self.sender, self.sender_bn, key_shape),
                              (self.receiver, self.receiver_bn, query_shape)]:
            fc.build(shape)
            bn.build(fc.compute_output_shape(shape))

    def _project(self, fc, bn, x, training):
        return tf.reshape(bn(fc(x), training=training), [-1, self.units, self.num_head])

    def call(self, inputs, training=False):
        key, query = inputs
        sender = self._project(self.sender, self.sender_bn, key, training)
        receiver = self._project(self.receiver, self.receiver_bn, query, training)
        return tf.einsum("idh,jdh->hij", sender, receiver)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_head": self.num_head}


@keras.saving.register_keras_serializable(package="tf_kd")
class Estimator(keras.layers.Layer):
    """TF1 `Estimator`: rebuilds the frontend vectors `[B, units]` from the
    backend vectors `x` `[B, D_x]` and the attention graphs `[num_head, B,
    B]`.

    The graphs are softmaxed over their last axis and head-dropped
    (`drop_head`); `x` goes through dense `fc0` to `hidden` features, batch
    norm `bn0` and ReLU; each head mixes the examples' features by its graph;
    the heads are concatenated per example `[B, num_head * hidden]`, and
    dense `fc1` (zero-initialised bias) and l2-normalisation give the
    estimate.
    """

    def __init__(self, units, hidden, num_head=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = hidden
        self.num_head = num_head
        self.fc0 = _mha_dense(hidden, "fc0")
        self.bn0 = _mha_batch_norm("bn0", activation="relu")
        self.fc1 = _mha_dense(units, "fc1", use_bias=True, bias_initializer="zeros")

    def build(self, input_shape):
        x_shape = input_shape[0]
        self.fc0.build(x_shape)
        self.bn0.build(self.fc0.compute_output_shape(x_shape))
        self.fc1.build((None, self.num_head * self.hidden))

    def call(self, inputs, training=False, drop_heads=True, seed=None):
        x, graph = inputs
        graph = tf.nn.softmax(graph)
        if drop_heads:
            graph = drop_head(graph, seed)
        x = self.bn0(self.fc0(x), training=training)
        mixed = tf.einsum("hij,jd->ihd", graph, x)            # [B, heads, hidden]
        mixed = tf.reshape(mixed, [-1, self.num_head * self.hidden])
        return tf.math.l2_normalize(self.fc1(mixed), -1)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "hidden": self.hidden,
                "num_head": self.num_head}


@keras.saving.register_keras_serializable(package="tf_kd")
class MultiHeadGraph(keras.layers.Layer):
    """The multi-head attention network of one pair of consecutive stages
    (TF1 scope `MHA{i}`), frontend vectors of size `dim`, backend vectors of
    size `prev_dim`: an `AttentionHead` ("Attention") and an `Estimator`
    ("Estimator"), both of width `(dim + prev_dim) // 2` per head.

    Calling it on `[v, v_prev]` gives the graphs used for distillation, with
    the batch norms always in inference mode (TF1's `reuse` calls); the
    estimator training uses them in training mode.
    """

    def __init__(self, dim, prev_dim, num_head=8, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.prev_dim = prev_dim
        self.num_head = num_head
        width = (dim + prev_dim) // 2
        self.attention = AttentionHead(width, num_head, name="Attention")
        self.estimator = Estimator(dim, width, num_head, name="Estimator")

    def build(self, input_shape=None):
        if self.built:                     # e.g. already built by `from_config`
            return
        self.attention.build([(None, self.dim), (None, self.prev_dim)])
        self.estimator.build([(None, self.prev_dim), (self.num_head, None, None)])

    def call(self, inputs):
        """The distillation graphs `[num_head, B, B]` of `[v, v_prev]`."""
        v, v_prev = inputs
        return self.graph(v, v_prev, training=False)

    def graph(self, v, v_prev, training=False):
        """The attention graphs `[num_head, B, B]` relating each example's
        `v` (key) to each example's `v_prev` (query)."""
        return self.attention([v, v_prev], training=training)

    def estimate(self, v, v_prev, training=True, drop_heads=True, seed=None):
        """The estimator's reconstruction of `v` `[B, dim]` from the batch's
        `v_prev` through the attention graphs of `(v, v_prev)`; `seed`: of
        the head dropping (`drop_head`)."""
        graph = self.graph(v, v_prev, training=training)
        return self.estimator([v_prev, graph], training=training, drop_heads=drop_heads,
                              seed=seed)

    def estimator_loss(self, v, v_prev, training=True, drop_heads=True, seed=None):
        """TF1's `MHA_loss` of the pair: `mean_b(1 - <estimate_b, v_b>)`,
        the mean cosine distance of the estimate to the unit vectors `v`."""
        estimate = self.estimate(v, v_prev, training=training, drop_heads=drop_heads,
                                 seed=seed)
        return tf.reduce_mean(1 - tf.reduce_sum(estimate * v, -1))

    def weight_penalty(self, scale=5e-4):
        """TF1's decay of the attention network, `scale * sum(w**2)` (no
        `/2`) over the variables whose TF1 names start with g, w or b:
        gammas, weights, betas and biases, not the moving statistics."""
        decayed = [w for w in self.weights if w.name in {"kernel", "bias", "gamma", "beta"}]
        return scale * tf.add_n([tf.reduce_sum(tf.square(w)) for w in decayed])

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "prev_dim": self.prev_dim,
                "num_head": self.num_head}


def multi_head_graphs(dims, num_head=8):
    """Built `MultiHeadGraph`s `MHA1, MHA2, ...` for stages of sizes `dims`."""
    graphs = []
    for i in range(1, len(dims)):
        graph = MultiHeadGraph(dims[i], dims[i - 1], num_head, name=f"MHA{i}")
        graph.build()
        graphs.append(graph)
    return graphs


def _pairs(vectors):
    return zip(vectors[1:], vectors[:-1])


def mhgd(student_vectors, teacher_vectors, graphs):
    """MHGD's distillation loss from the per-stage vectors `[B, D]`
    (`singular_vectors`): `sum_pairs kld(tanh G_S, tanh G_T)` with the
    graphs of the frozen attention networks, batch norms in inference
    mode."""
    return tf.add_n([
        kld(tf.tanh(graph([v_s, v_s_prev])), tf.tanh(graph([v_t, v_t_prev])))
        for graph, (v_s, v_s_prev), (v_t, v_t_prev)
        in zip(graphs, _pairs(student_vectors), _pairs(teacher_vectors))])


def mhgd_loss(student_feats, teacher_feats, graphs, num_student=4):
    """TF1 `Relation.MHGD`'s returned loss, from the stages' feature maps."""
    return mhgd(*singular_vectors(student_feats, teacher_feats, num_student), graphs)


def estimator_loss(teacher_vectors, graphs, training=True, seed=None):
    """The estimator losses of the attention networks on the teacher's
    vectors `[B, D]`, summed over stage pairs (TF1 `MHA_loss` collection);
    `seed` (stateless, shape [2]) fixes the head dropping of every pair."""
    return tf.add_n([
        graph.estimator_loss(v, v_prev, training=training,
                             seed=None if seed is None
                             else tf.random.experimental.stateless_fold_in(seed, i))
        for i, (graph, (v, v_prev)) in enumerate(zip(graphs, _pairs(teacher_vectors)))])


def mha_loss(teacher_vectors, graphs, scale=5e-4, seed=None):
    """TF1's objective of the attention networks' training op
    (`Optimizer_w_MHGD`'s `mha_loss`): `estimator_loss` plus each network's
    `weight_penalty(scale)`."""
    penalty = tf.add_n([graph.weight_penalty(scale) for graph in graphs])
    return estimator_loss(teacher_vectors, graphs, seed=seed) + penalty


# -- Beyond TF1: RepDistiller's relation methods (HobbitLong/RepDistiller
# b84f547c5db6a35318d4671d7d5c4de74c822403, `distiller_zoo/`).

def pkt(student, teacher, eps=1e-7):
    """Passalis & Tefas, "Learning deep representations with probabilistic
    knowledge transfer", ECCV 2018 (RepDistiller `distiller_zoo/PKT.py`), on
    embeddings `[B, C]` (the sizes may differ): each network's cosine
    similarities between the examples, mapped to [0, 1] by `(cos + 1) / 2`
    and normalised per row into conditional probabilities `P`; the loss is
    `mean_ij P_t log((P_t + eps) / (P_s + eps))` over the `B x B` entries."""
    def conditional_probabilities(x):
        norm = tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(x), 1, keepdims=True), 1e-24))
        x = x / (norm + eps)
        similarity = (tf.matmul(x, x, transpose_b=True) + 1) / 2
        return similarity / tf.reduce_sum(similarity, 1, keepdims=True)

    p_s, p_t = conditional_probabilities(student), conditional_probabilities(teacher)
    return tf.reduce_mean(p_t * tf.math.log((p_t + eps) / (p_s + eps)))


def similarity_preserving(student, teacher):
    """Tung & Mori, "Similarity-preserving knowledge distillation", ICCV 2019
    (RepDistiller `distiller_zoo/SP.py`), on one feature of each network (any
    shape `[B, ...]`, flattened per example): the `B x B` Gram matrices,
    each row l2-normalised, and `||G_t - G_s||_F^2 / B^2`."""
    def gram(x):
        x = tf.reshape(x, [tf.shape(x)[0], -1])
        # F.normalize: x / max(||x||, 1e-12)
        return tf.math.l2_normalize(tf.matmul(x, x, transpose_b=True), 1, epsilon=1e-24)

    batch = tf.cast(tf.shape(student)[0], student.dtype)
    return tf.reduce_sum(tf.square(gram(teacher) - gram(student))) / batch ** 2


def correlation_congruence(student, teacher):
    """Peng et al., "Correlation congruence for knowledge distillation", ICCV
    2019, as RepDistiller's `Correlation` (`distiller_zoo/CC.py`, the
    authors' code) on embeddings `[B, D]` of the same size: with `delta =
    |e_s - e_t|`, the mean over consecutive examples of `sum_d delta_b
    delta_{b+1}`."""
    delta = tf.abs(student - teacher)
    return tf.reduce_mean(tf.reduce_sum(delta[:-1] * delta[1:], 1))


@keras.saving.register_keras_serializable(package="tf_kd")
class LinearEmbed(keras.layers.Layer):
    """RepDistiller's `LinearEmbed` (`models/util.py`), which CC puts on the
    pooled vector of each network: a dense layer with bias to `units` (128)
    features, initialised as PyTorch's `nn.Linear` (weights and bias uniform
    in `±1/sqrt(fan_in)`), both under the weight decay every trained
    parameter has there (SGD's 5e-4, here TF1's `l2_regularizer`)."""

    def __init__(self, units=128, weight_decay=layers.WEIGHT_DECAY, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.weight_decay = weight_decay

    def build(self, input_shape):
        bound = 1 / float(input_shape[-1]) ** 0.5
        self.linear = layers.dense(
            self.units, "linear", self.weight_decay, use_bias=True,
            kernel_initializer=keras.initializers.RandomUniform(-bound, bound),
            bias_initializer=keras.initializers.RandomUniform(-bound, bound),
            bias_regularizer=layers.l2_regularizer(self.weight_decay))
        self.linear.build(input_shape)

    def call(self, x):
        return self.linear(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "weight_decay": self.weight_decay}


# -- Beyond TF1: CRD (Tian et al., "Contrastive representation distillation",
# ICLR 2020), as RepDistiller (HobbitLong/RepDistiller
# b84f547c5db6a35318d4671d7d5c4de74c822403, `crd/criterion.py`, `crd/memory.py`).

@keras.saving.register_keras_serializable(package="tf_kd")
class Embed(LinearEmbed):
    """CRD's `Embed` (`crd/criterion.py`): the flattened feature through a
    linear layer with bias, initialised as PyTorch's `nn.Linear`, then
    divided by its l2 norm (`Normalize(2)`, no epsilon)."""

    def build(self, input_shape):
        super().build([input_shape[0], math.prod(input_shape[1:])])

    def call(self, x):
        x = self.linear(tf.reshape(x, [tf.shape(x)[0], -1]))
        return x / tf.norm(x, axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package="tf_kd")
class ContrastMemory(keras.layers.Layer):
    """CRD's `ContrastMemory` (`crd/memory.py`): one memory bank per network
    of `size` (the training images) embeddings of `feat_dim` features,
    non-trainable variables drawn uniform in `±1 / sqrt(feat_dim / 3)`.

    `call(v_s, v_t, indices, contrast_indices)` (`contrast_indices` `[B,
    K + 1]`, the example's own index first) scores each student embedding
    against the teacher bank's gathered entries and each teacher embedding
    against the student bank's, `exp(m . v / T) / Z`, and then moves the
    examples' entries towards their embeddings (`update`). Each `Z` is set
    once, on the first batch, to `size` times the mean of that batch's
    `exp(m . v / T)`, and is a constant from then on. A step's cost is the
    gather of `B (K + 1)` entries and the scatter of `B`, whatever `size`."""

    def __init__(self, size, feat_dim=128, temperature=0.07, momentum=0.5, **kwargs):
        super().__init__(**kwargs)
        self.size, self.feat_dim = size, feat_dim
        self.temperature, self.momentum = temperature, momentum
        bound = 1 / math.sqrt(feat_dim / 3)
        bank = keras.initializers.RandomUniform(-bound, bound)
        # `memory_v1`, `memory_v2` and `Z_v1`, `Z_v2` of the reference
        self.memory_s = self.add_weight(shape=(size, feat_dim), initializer=bank,
                                        trainable=False, name="memory_s")
        self.memory_t = self.add_weight(shape=(size, feat_dim), initializer=bank,
                                        trainable=False, name="memory_t")
        self.z_s = self.add_weight(shape=(), initializer=keras.initializers.Constant(-1.0),
                                   trainable=False, name="z_s")
        self.z_t = self.add_weight(shape=(), initializer=keras.initializers.Constant(-1.0),
                                   trainable=False, name="z_t")

    def scores(self, memory, v, contrast_indices, z):
        """`exp(m_k . v / T) / Z` `[B, K + 1]` over the gathered entries
        `m_k`, setting `Z` where it is not set yet."""
        entries = tf.stop_gradient(tf.gather(memory, contrast_indices))
        out = tf.exp(tf.einsum("bkd,bd->bk", entries, v) / self.temperature)
        z.assign(tf.where(z < 0, tf.stop_gradient(tf.reduce_mean(out)) * self.size, z))
        return out / z

    def update(self, v_s, v_t, indices):
        """`m[i] = normalize(momentum m[i] + (1 - momentum) v)` for the
        examples `indices` of each bank (the reference's `index_copy_`)."""
        for memory, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
            moved = (self.momentum * tf.gather(memory, indices)
                     + (1 - self.momentum) * tf.stop_gradient(v))
            memory.value.scatter_update(tf.IndexedSlices(     # the tf.Variable of Keras'
                moved / tf.norm(moved, axis=1, keepdims=True), indices))

    def call(self, v_s, v_t, indices, contrast_indices):
        out_s = self.scores(self.memory_t, v_s, contrast_indices, self.z_s)
        out_t = self.scores(self.memory_s, v_t, contrast_indices, self.z_t)
        self.update(v_s, v_t, indices)
        return out_s, out_t

    def get_config(self):
        return {**super().get_config(), "size": self.size, "feat_dim": self.feat_dim,
                "temperature": self.temperature, "momentum": self.momentum}


def contrast_loss(scores, size, eps=1e-7):
    """CRD's `ContrastLoss` (Eq. 18; `crd/criterion.py`) on scores `[B, K +
    1]`, the positive first: with the noise probability `P_n = 1 / size`,
    `-(sum_b log(P_pos / (P_pos + K P_n + eps)) + sum_bk log(K P_n / (P_neg
    + K P_n + eps))) / B`."""
    negatives = scores.shape[1] - 1
    noise = negatives / size
    positive, negative = scores[:, 0], scores[:, 1:]
    log_d1 = tf.math.log(positive / (positive + noise + eps))
    log_d0 = tf.math.log(noise / (negative + noise + eps))
    batch = tf.cast(tf.shape(scores)[0], scores.dtype)
    return -(tf.reduce_sum(log_d1) + tf.reduce_sum(log_d0)) / batch


def crd(v_s, v_t, indices, contrast_indices, memory):
    """CRD's `CRDLoss` on the embeddings `v_s`, `v_t` (`Embed`): the
    contrast loss of the student anchored on the teacher's bank plus that of
    the teacher anchored on the student's, `memory` (`ContrastMemory`)
    updated with the batch."""
    out_s, out_t = memory(v_s, v_t, indices, contrast_indices)
    return contrast_loss(out_s, memory.size) + contrast_loss(out_t, memory.size)


# -- Beyond TF1: IRG (Liu et al., "Knowledge distillation via instance
# relationship graph", CVPR 2019), as AberHu/Knowledge-Distillation-Zoo
# (65470c846c1300d555815da26999cbe2b51fc815, `kd_losses/irg.py`,
# `train_kd.py`). The authors' Caffe code (yufanLIU/IRG
# 0a6837c923cf3a814a4c15022c11a658905297a5) releases each part alone.

def irg_edges(x, eps=1e-12):
    """IRG's edges of one layer (`euclidean_dist_fm` / `_feat` with
    `squared=True`): the squared Euclidean distances `[B, B]` between the
    batch's flattened examples, floored at `eps`, the diagonal zeroed, over
    their maximum."""
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    square = tf.reduce_sum(tf.square(x), 1)
    distance = tf.maximum(square[:, None] + square[None] - 2 * tf.matmul(x, x, transpose_b=True),
                          eps)
    distance = tf.linalg.set_diag(distance, tf.zeros_like(square))
    return distance / tf.reduce_max(distance)


def irg_transformation_problem(shape, next_shape):
    """Why IRG's transformation cannot relate features of these shapes
    `[B, H, W, C]` (earlier, later in the network), or None: the reference
    pools the earlier one down to the later one's size and averages the
    later one's channels in pairs when it has twice as many, and nothing
    else."""
    if len(shape) != 4 or len(next_shape) != 4:
        return (f"it relates two feature maps [B, H, W, C], not {tuple(shape)} and "
                f"{tuple(next_shape)}")
    (h, w, c), (h2, w2, c2) = shape[1:], next_shape[1:]
    if h < h2 or w < w2:
        return (f"the earlier feature ({h}x{w}) is smaller than the later one ({h2}x{w2}); "
                "it pools the earlier one down to the later one's size")
    if c2 not in (c, 2 * c):
        return (f"the later feature has {c2} channels and the earlier {c}; it takes the same "
                "width or twice it (averaging channel pairs), as its reference")
    return None


def _pooled_to(x, size):
    """`F.adaptive_avg_pool2d(x, size)` of `[B, H, W, C]`: an average pool
    where `size` divides the map (the same bins), else PyTorch's bins."""
    (h, w), (h2, w2) = x.shape[1:3], size
    if (h, w) == (h2, w2):
        return x
    if h % h2 == 0 and w % w2 == 0:
        window = (h // h2, w // w2)
        return tf.nn.avg_pool2d(x, window, window, "VALID")
    return multiple.adaptive_average_pool(x, size)


def irg_transformation(feature, next_feature, eps=1e-12):
    """IRG's transformation between two layers of one network
    (`euclidean_dist_fms`, `squared=True`): `feature` average-pooled to
    `next_feature`'s size, `next_feature`'s channels averaged in pairs `(2j,
    2j + 1)` when it has twice as many; per example the squared distance
    between the two, floored at `eps`, over the batch's maximum (`[B]`)."""
    problem = irg_transformation_problem(feature.shape, next_feature.shape)
    if problem:
        raise ValueError(f"IRG's transformation: {problem}.")
    feature = _pooled_to(feature, next_feature.shape[1:3])
    channels = feature.shape[-1]
    if next_feature.shape[-1] == 2 * channels:
        next_feature = tf.reduce_mean(
            tf.reshape(next_feature, [-1, *next_feature.shape[1:3], channels, 2]), -1)
    difference = tf.reshape(feature - next_feature, [tf.shape(feature)[0], -1])
    distance = tf.maximum(tf.reduce_sum(tf.square(difference), 1), eps)
    return distance / tf.reduce_max(distance)


def irg(student, teacher, weights=(0.1, 5.0, 5.0)):
    """IRG's loss (`kd_losses/irg.py`) on `student` and `teacher`, each
    `(feature, next_feature, pooled, logits)`: the reference's `rb2`, `rb3`
    (two stage outputs, after their ReLU), `feat` and `out`. With `mse` the
    mean squared error,

        w_vert mse(logits_s, logits_t)                                 (vertices)
        + w_edge (mse of the edges of pooled, feature, next_feature) / 3
        + w_tran mse(transformation_s, transformation_t)

    (`irg_edges`, `irg_transformation`), `weights = (w_vert, w_edge, w_tran)`,
    `train_kd.py`'s `--w_irg_vert 0.1 --w_irg_edge 5.0 --w_irg_tran 5.0`.
    The edges are `B x B`, so the two networks' widths and sizes may differ;
    the transformation stays within each network."""
    def mse(a, b):
        return tf.reduce_mean(tf.square(a - b))

    vertex_weight, edge_weight, transformation_weight = weights
    feature_s, next_s, pooled_s, logits_s = student
    feature_t, next_t, pooled_t, logits_t = teacher
    vertex = mse(logits_s, logits_t)
    edge = (mse(irg_edges(pooled_s), irg_edges(pooled_t))
            + mse(irg_edges(feature_s), irg_edges(feature_t))
            + mse(irg_edges(next_s), irg_edges(next_t))) / 3
    transformation = mse(irg_transformation(feature_s, next_s),
                         irg_transformation(feature_t, next_t))
    return vertex_weight * vertex + edge_weight * edge + transformation_weight * transformation
