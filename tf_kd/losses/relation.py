"""Relational knowledge: relations between the examples of a batch (TF1
`nets/Relation.py`): RKD and MHGD.

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

import keras
import tensorflow as tf

from tf_kd import layers
from tf_kd import svd as svd_ops


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
