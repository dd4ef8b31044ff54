"""RKD and MHGD against NumPy references written from the TF1 formulas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from reference import l2_normalize, log_softmax, relu, softmax
from tf_kd.losses import relation

RNG = np.random.RandomState(4)


# -- RKD

def huber(x, y):
    e = np.abs(x - y)
    return np.mean(np.where(e <= 1, e ** 2 / 2, e - 0.5))


def distance(x):
    d = np.sqrt(np.maximum(np.sum((x[:, None] - x[None]) ** 2, -1), 1e-12))
    return d / (d[d > 0].mean() + 1e-8)


def angle(x):
    e = x[None] - x[:, None]                                   # e[i, j] = x_j - x_i
    e = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-6)
    return np.einsum("ijd,ikd->ijk", e, e)


def rkd_reference(s, t, weights):
    s, t = l2_normalize(s, 1), l2_normalize(t, 1)
    return weights[0] * huber(distance(s), distance(t)) + weights[1] * huber(angle(s), angle(t))


@pytest.mark.parametrize("weights", [(25.0, 50.0), (100.0, 200.0)])
def test_rkd(weights):
    s, t = RNG.randn(6, 5), RNG.randn(6, 7)
    got = relation.rkd(tf.constant(s), tf.constant(t), weights)
    assert float(got) == pytest.approx(rkd_reference(s, t, weights), rel=1e-8)


def test_rkd_with_repeated_examples_has_finite_gradients():
    s = RNG.randn(5, 4)
    s[3] = s[1]                                                # a zero distance
    s, t = tf.constant(s), tf.constant(RNG.randn(5, 4) * 3)
    with tf.GradientTape() as tape:
        tape.watch(s)
        loss = relation.rkd(s, t)
    assert float(loss) == pytest.approx(rkd_reference(s.numpy(), t.numpy(), (25, 50)), rel=1e-8)
    assert np.all(np.isfinite(tape.gradient(loss, s)))


# -- MHGD: vectors, graph loss pieces

def test_kld_sums_every_row():
    x, y = RNG.randn(2, 3, 4, 4)
    expected = np.sum(softmax(x) * (log_softmax(x) - log_softmax(y)))
    assert float(relation.kld(tf.constant(x), tf.constant(y))) == pytest.approx(expected)


def test_drop_head_keeps_or_zeroes_whole_heads_per_example():
    graph = RNG.rand(8, 500, 3) + 0.1
    kept = relation.drop_head(tf.constant(graph)).numpy()
    alive = np.all(kept == graph, -1)                          # [heads, B]
    dead = np.all(kept == 0, -1)
    assert np.all(alive | dead)
    heads_alive = alive.sum(0)
    assert heads_alive.min() >= 1 and heads_alive.max() <= 7   # above the mean: not all
    assert 0.4 < alive.mean() < 0.6


def leading_right_vectors(x, n):
    _, _, vt = np.linalg.svd(x.reshape(len(x), -1, x.shape[-1]), full_matrices=False)
    return np.swapaxes(vt, 1, 2)[:, :, :n]


def test_singular_vectors_are_the_teachers_and_the_aligned_students():
    shapes = [(3, 6, 6, 4), (3, 2, 2, 8)]                      # eigh and x x^T paths
    s = [RNG.randn(*shape) for shape in shapes]
    t = [RNG.randn(*shape) for shape in shapes]
    student, teacher = relation.singular_vectors([tf.constant(x) for x in s],
                                                 [tf.constant(x) for x in t])
    assert [v.shape for v in student] == [v.shape for v in teacher] == [(3, 4), (3, 8)]
    for sfm, tfm, v_s, v_t in zip(s, t, student, teacher):
        v_t_np = leading_right_vectors(tfm, 1)[..., 0]
        v_t_np *= np.sign(np.sum(v_t_np * v_t.numpy(), 1, keepdims=True))
        np.testing.assert_allclose(v_t, v_t_np, atol=1e-10)
        candidates = leading_right_vectors(sfm, 4)             # [B, D, 4]
        cosine = np.einsum("bdk,bd->bk", candidates, v_t_np)
        best = np.argmax(np.abs(cosine), 1)
        expected = np.stack([candidates[b, :, best[b]] * np.sign(cosine[b, best[b]])
                             for b in range(3)])
        np.testing.assert_allclose(v_s, expected, atol=1e-10)
    np.testing.assert_allclose(relation.teacher_singular_vector(tf.constant(t[0])), teacher[0])
    assert relation.mhgd_vectors([tf.constant(x) for x in s], 4)[1].shape == (3, 8, 4)


# -- MHGD: the attention network

def dense_bn(x, fc, bn, training):
    """NumPy dense (+ bias) and batch norm (no activation), float64."""
    y = x @ fc.kernel.numpy().astype("float64")
    if fc.use_bias:
        y = y + fc.bias.numpy()
    if training:
        mean, var = y.mean(0), y.var(0)
    else:
        mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    return bn.gamma.numpy() * (y - mean) / np.sqrt(var + 1.001e-5) + bn.beta.numpy()


def randomise(layer):
    for v in layer.weights:
        if "variance" in v.name:
            v.assign(RNG.rand(*v.shape) + 0.5)
        else:
            v.assign(RNG.randn(*v.shape) * 0.5)


def np_graph(net, v, v_prev, training):
    """`[heads, B, B]` attention graphs of a `MultiHeadGraph` in NumPy."""
    head = net.attention
    sender = dense_bn(v, head.sender, head.sender_bn, training)
    receiver = dense_bn(v_prev, head.receiver, head.receiver_bn, training)
    shape = (len(v), head.units, head.num_head)
    return np.einsum("bdh,cdh->hbc", sender.reshape(shape), receiver.reshape(shape))


def unit_rows(batch, dim):
    return l2_normalize(RNG.randn(batch, dim), 1)


def make_graph(dim=6, prev_dim=4, num_head=2):
    net = relation.MultiHeadGraph(dim, prev_dim, num_head)
    net.build()
    randomise(net)
    return net


def f32(x):
    return tf.constant(x, tf.float32)


def test_layer_arguments_follow_tf1():
    net = relation.MultiHeadGraph(dim=256, prev_dim=128)
    net.build()
    head, estimator = net.attention, net.estimator
    assert head.units == estimator.hidden == 192 and head.num_head == 8
    assert head.sender.units == head.receiver.units == 192 * 8
    assert estimator.fc0.units == 192 and estimator.fc1.units == 256
    for fc in (head.sender, head.receiver, estimator.fc0, estimator.fc1):
        assert fc.kernel_regularizer is None and fc.activation is keras.activations.linear
        assert fc.use_bias == (fc is estimator.fc1)
    assert not np.any(estimator.fc1.bias.numpy())
    for bn in (head.sender_bn, head.receiver_bn, estimator.bn0):
        assert bn.gamma_regularizer is None and bn.beta_regularizer is None
        assert bn.momentum == 0.9 and bn.epsilon == 1.001e-5 and bn.scale and bn.center
    assert head.sender_bn.activation is keras.activations.linear
    assert estimator.bn0.activation is keras.activations.relu
    assert net.losses == []                                     # no weight decay
    names = sorted(w.name for w in net.trainable_variables)
    assert names == sorted(["kernel"] * 4 + ["bias"] + ["gamma", "beta"] * 3)


@pytest.mark.parametrize("training", [False, True])
def test_attention_head(training):
    net = make_graph(dim=5, prev_dim=7, num_head=4)
    v, v_prev = RNG.randn(6, 5), RNG.randn(6, 7)
    expected = np_graph(net, v, v_prev, training)
    got = net.graph(f32(v), f32(v_prev), training=training)
    assert got.shape == (4, 6, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    if not training:
        np.testing.assert_allclose(net([f32(v), f32(v_prev)]), expected, rtol=1e-4, atol=1e-4)


def np_estimate(net, v, v_prev, mask=None):
    """The estimator in training mode, in NumPy; `mask` `[heads, B]` drops heads."""
    graph = softmax(np_graph(net, v, v_prev, True))
    if mask is not None:
        graph = graph * mask[:, :, None]
    est = net.estimator
    x = relu(dense_bn(v_prev, est.fc0, est.bn0, True))
    mixed = np.einsum("hbc,cd->bhd", graph, x).reshape(len(v), -1)
    return l2_normalize(mixed @ est.fc1.kernel.numpy() + est.fc1.bias.numpy(), 1)


def test_estimator_loss():
    net = make_graph()
    v, v_prev = unit_rows(5, 6), unit_rows(5, 4)
    expected = np.mean(1 - np.sum(np_estimate(net, v, v_prev) * v, -1))
    got = net.estimator_loss(f32(v), f32(v_prev), drop_heads=False)
    assert float(got) == pytest.approx(expected, rel=1e-4)


def test_estimator_drops_heads_after_the_softmax(monkeypatch):
    net = make_graph(num_head=3)
    v, v_prev = unit_rows(5, 6), unit_rows(5, 4)
    mask = (RNG.rand(3, 5) > 0.5).astype("float64")
    monkeypatch.setattr(relation, "drop_head",
                        lambda graph, seed=None: graph * tf.constant(mask[:, :, None], graph.dtype))
    expected = np_estimate(net, v, v_prev, mask)
    np.testing.assert_allclose(net.estimate(f32(v), f32(v_prev)), expected, rtol=1e-4, atol=1e-5)


def test_estimator_training_updates_the_moving_statistics():
    net = make_graph()
    v, v_prev = unit_rows(5, 6), unit_rows(5, 4)
    bn = net.attention.sender_bn
    old = bn.moving_mean.numpy()
    batch_mean = (v @ net.attention.sender.kernel.numpy()).mean(0)
    net.estimator_loss(f32(v), f32(v_prev))
    np.testing.assert_allclose(bn.moving_mean, 0.9 * old + 0.1 * batch_mean, rtol=1e-4, atol=1e-6)
    before = [w.numpy() for w in net.weights]
    net([f32(v), f32(v_prev)])                                   # distillation graphs
    for w, b in zip(net.weights, before):
        np.testing.assert_array_equal(w, b)


def test_weight_penalty_skips_the_moving_statistics():
    net = make_graph()
    for w in net.non_trainable_weights:
        w.assign(w + 100.0)
    penalty = 5e-4 * sum(np.sum(w.numpy().astype("float64") ** 2)
                         for w in net.weights if "moving" not in w.name)
    assert float(net.weight_penalty()) == pytest.approx(penalty, rel=1e-5)
    assert float(net.weight_penalty(1.0)) == pytest.approx(penalty / 5e-4, rel=1e-5)


def test_mhgd_loss_is_the_kl_of_tanh_graphs():
    graphs = [make_graph(6, 4), make_graph(3, 6)]
    student = [unit_rows(5, d) for d in (4, 6, 3)]
    teacher = [unit_rows(5, d) for d in (4, 6, 3)]
    expected = 0.0
    for i, net in enumerate(graphs):
        g_s = np.tanh(np_graph(net, student[i + 1], student[i], False))
        g_t = np.tanh(np_graph(net, teacher[i + 1], teacher[i], False))
        expected += np.sum(softmax(g_s) * (log_softmax(g_s) - log_softmax(g_t)))
    got = relation.mhgd([f32(x) for x in student], [f32(x) for x in teacher], graphs)
    assert float(got) == pytest.approx(expected, rel=1e-4)


def test_mha_loss_is_estimator_loss_plus_penalty(monkeypatch):
    monkeypatch.setattr(relation, "drop_head", lambda graph, seed=None: graph)
    graphs = [make_graph(6, 4), make_graph(3, 6)]
    teacher = [unit_rows(5, d) for d in (4, 6, 3)]
    estimation = sum(np.mean(1 - np.sum(np_estimate(net, teacher[i + 1], teacher[i])
                                        * teacher[i + 1], -1))
                     for i, net in enumerate(graphs))
    penalty = sum(float(net.weight_penalty()) for net in graphs)
    vectors = [f32(x) for x in teacher]
    assert float(relation.estimator_loss(vectors, graphs)) == pytest.approx(estimation, rel=1e-4)
    assert float(relation.mha_loss(vectors, graphs)) == pytest.approx(estimation + penalty,
                                                                      rel=1e-4)


def test_multi_head_graphs_and_config_round_trip():
    graphs = relation.multi_head_graphs([64, 128, 256], num_head=8)
    assert [g.name for g in graphs] == ["MHA1", "MHA2"]
    assert [(g.dim, g.prev_dim) for g in graphs] == [(128, 64), (256, 128)]
    copy = keras.layers.deserialize(keras.layers.serialize(graphs[1]))
    assert isinstance(copy, relation.MultiHeadGraph)
    assert (copy.dim, copy.prev_dim, copy.num_head, copy.name) == (256, 128, 8, "MHA2")
    copy.build()                                                # built once only
    assert [w.shape for w in copy.weights] == [w.shape for w in graphs[1].weights]


def test_mhgd_in_tf_function_with_unknown_batch():
    shapes = [(4, 8, 8, 4), (4, 4, 4, 6), (4, 2, 2, 8)]
    graphs = relation.multi_head_graphs([4, 6, 8], num_head=2)
    s = [f32(RNG.rand(*shape)) for shape in shapes]
    t = [f32(RNG.rand(*shape)) for shape in shapes]
    spec = [tf.TensorSpec([None, *shape[1:]], tf.float32) for shape in shapes]
    variables = [w for g in graphs for w in g.trainable_variables]

    @tf.function(input_signature=[spec, spec], jit_compile=False)
    def step(s, t):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(s)
            distillation = relation.mhgd_loss(s, t, graphs)
            teacher = [relation.teacher_singular_vector(f) for f in t]
            mha = relation.mha_loss(teacher, graphs)
        return distillation, tape.gradient(distillation, s), tape.gradient(mha, variables)

    expected = relation.mhgd(*relation.singular_vectors(s, t), graphs)
    distillation, student_grads, graph_grads = step(s, t)    # then updates moving stats
    assert float(distillation) == pytest.approx(float(expected), rel=1e-4)
    assert all(g is not None and np.all(np.isfinite(g)) for g in student_grads + graph_grads)
    assert all(np.abs(g).max() > 0 for g in student_grads)
