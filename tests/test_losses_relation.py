import numpy as np
import pytest
import tensorflow as tf

from reference import l2_normalize, log_softmax, relu, softmax
from tf_kd.losses import relation

RNG = np.random.RandomState(4)


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


def test_rkd():
    s, t = RNG.randn(6, 5), RNG.randn(6, 7)
    s_n, t_n = l2_normalize(s, 1), l2_normalize(t, 1)
    expected = 25 * huber(distance(s_n), distance(t_n)) + 50 * huber(angle(s_n), angle(t_n))
    got = relation.rkd(tf.constant(s), tf.constant(t), (25.0, 50.0))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_kld_sums_every_row():
    x, y = RNG.randn(2, 3, 4, 4)
    expected = np.sum(softmax(x) * (log_softmax(x) - log_softmax(y)))
    assert float(relation.kld(tf.constant(x), tf.constant(y))) == pytest.approx(expected)


def test_drop_head_zeroes_whole_heads_per_example():
    graph = tf.ones([8, 5, 5])
    kept = relation.drop_head(graph).numpy()
    rows = kept.sum(-1)                                         # [heads, B]
    assert set(np.unique(rows)) <= {0.0, 5.0}
    assert np.all(rows.sum(0) > 0)                              # some head survives
    assert 0 < (rows > 0).mean() < 1


def dense_bn(x, fc, bn, training):
    y = x @ fc.kernel.numpy().astype("float64")
    if fc.use_bias:
        y = y + fc.bias.numpy()
    if training:
        mean, var = y.mean(0), y.var(0)
    else:
        mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    return bn.gamma.numpy() * (y - mean) / np.sqrt(var + 1e-5) + bn.beta.numpy()


def randomise(layer):
    for v in layer.weights:
        if "variance" in v.path:
            v.assign(RNG.rand(*v.shape) + 0.5)
        else:
            v.assign(RNG.randn(*v.shape) * 0.5)


@pytest.mark.parametrize("training", [False, True])
def test_attention_head(training):
    head = relation.AttentionHead(3, num_head=4)
    key, query = RNG.randn(6, 5), RNG.randn(6, 7)
    head.build([key.shape, query.shape])
    randomise(head)
    sender = dense_bn(key, head.sender, head.sender_bn, training).reshape(6, 3, 4)
    receiver = dense_bn(query, head.receiver, head.receiver_bn, training).reshape(6, 3, 4)
    expected = np.einsum("bdh,cdh->hbc", sender, receiver)     # [heads, B, B]
    got = head([tf.constant(key, tf.float32), tf.constant(query, tf.float32)], training=training)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    for layer in (head.sender, head.receiver):
        assert not layer.use_bias and layer.kernel_regularizer is None
    assert head.sender_bn.gamma_regularizer is None


def test_estimator_loss(monkeypatch):
    monkeypatch.setattr(relation, "drop_head", lambda g: g)     # the dropping is random
    graph_net = relation.MultiHeadGraph(dim=6, prev_dim=4, num_head=2)
    graph_net.build()
    randomise(graph_net)
    v = l2_normalize(RNG.randn(5, 6), 1)
    v_prev = l2_normalize(RNG.randn(5, 4), 1)
    attention, estimator = graph_net.attention, graph_net.estimator
    middle = 5                                                  # (6 + 4) // 2
    sender = dense_bn(v, attention.sender, attention.sender_bn, True).reshape(5, middle, 2)
    receiver = dense_bn(v_prev, attention.receiver, attention.receiver_bn, True).reshape(5, middle, 2)
    graph = softmax(np.einsum("bdh,cdh->hbc", sender, receiver))
    x = relu(dense_bn(v_prev, estimator.fc0, estimator.bn0, True))
    mixed = np.einsum("hbc,cd->bhd", graph, x).reshape(5, 2 * middle)
    estimate = l2_normalize(mixed @ estimator.fc1.kernel.numpy() + estimator.fc1.bias.numpy(), 1)
    expected = np.mean(1 - np.sum(estimate * v, -1))
    got = graph_net.estimator_loss(tf.constant(v, tf.float32), tf.constant(v_prev, tf.float32))
    assert float(got) == pytest.approx(expected, rel=1e-4)
    penalty = 5e-4 * sum(np.sum(w.numpy().astype("float64") ** 2)
                         for w in graph_net.trainable_variables)
    assert float(graph_net.weight_penalty()) == pytest.approx(penalty, rel=1e-5)
    names = {w.path.split("/")[-1] for w in graph_net.trainable_variables}
    assert names == {"kernel", "gamma", "beta", "bias"}        # TF1's g/w/b variables
    assert graph_net.losses == []                               # no weight decay


def test_mhgd_loss_is_kl_of_tanh_graphs():
    graphs = [relation.MultiHeadGraph(6, 4, 2), relation.MultiHeadGraph(3, 6, 2)]
    for g in graphs:
        g.build()
        randomise(g)
    student = [tf.constant(RNG.randn(5, d), tf.float32) for d in (4, 6, 3)]
    teacher = [tf.constant(RNG.randn(5, d), tf.float32) for d in (4, 6, 3)]
    expected = 0.0
    for i, g in enumerate(graphs):
        g_s = np.tanh(g([student[i + 1], student[i]]).numpy().astype("float64"))
        g_t = np.tanh(g([teacher[i + 1], teacher[i]]).numpy().astype("float64"))
        expected += np.sum(softmax(g_s) * (log_softmax(g_s) - log_softmax(g_t)))
    got = relation.mhgd(student, teacher, graphs)
    assert float(got) == pytest.approx(expected, rel=1e-4)


def test_singular_vectors_are_aligned_to_the_teacher():
    s = [tf.constant(RNG.randn(3, 6, 6, 4)), tf.constant(RNG.randn(3, 2, 2, 8))]
    t = [tf.constant(RNG.randn(3, 6, 6, 4)), tf.constant(RNG.randn(3, 2, 2, 8))]
    student, teacher = relation.singular_vectors(s, t)
    assert [v.shape for v in student] == [v.shape for v in teacher] == [(3, 4), (3, 8)]
    for v_s, v_t in zip(student, teacher):
        cosine = np.sum(v_s.numpy() * v_t.numpy(), 1)
        np.testing.assert_allclose(np.linalg.norm(v_s, axis=1), 1, rtol=1e-6)
        assert np.all(cosine >= 0)                              # sign-aligned
