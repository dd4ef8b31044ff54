import numpy as np
import pytest
import tensorflow as tf

from reference import batch_norm_train, l2_normalize, relu
from tf_kd.losses import multiple

RNG = np.random.RandomState(1)


def feats(widths=(4, 8), batch=3, size=(6, 3)):
    return [RNG.randn(batch, s, s, w) for s, w in zip(size, widths)]


def test_fitnet_equal_widths():
    s, t = feats(), feats()
    expected = sum(np.mean((a - b) ** 2) for a, b in zip(s, t))
    got = multiple.fitnet([tf.constant(x) for x in s], [tf.constant(x) for x in t])
    assert float(got) == pytest.approx(expected)
    assert multiple.hint_maps([x.shape for x in s], [x.shape for x in t]) == [None, None]


def test_fitnet_maps_the_teacher_to_the_student_width():
    s, t = feats((4, 8)), feats((6, 8))
    maps = multiple.hint_maps([x.shape for x in s], [x.shape for x in t])
    assert maps[1] is None and maps[0].units == 4 and not maps[0].use_bias
    assert maps[0].kernel_regularizer is not None
    w = maps[0].kernel.numpy().astype("float64")
    expected = np.mean((s[0] - t[0] @ w) ** 2) + np.mean((s[1] - t[1]) ** 2)
    got = multiple.fitnet([tf.constant(x, tf.float32) for x in s],
                          [tf.constant(x, tf.float32) for x in t], maps)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_attention_transfer():
    s, t = feats(), feats((5, 9))
    expected = 0.0
    for a, b in zip(s, t):
        qa = l2_normalize(np.mean(a ** 2, -1).reshape(3, -1), 1)
        qb = l2_normalize(np.mean(b ** 2, -1).reshape(3, -1), 1)
        expected += np.mean((qa - qb) ** 2) * 1e3 / 2
    got = multiple.attention_transfer([tf.constant(x) for x in s], [tf.constant(x) for x in t])
    assert float(got) == pytest.approx(expected, rel=1e-10)


def ab_reference(source, target, margin):
    loss = ((source + margin) ** 2 * ((source > -margin) & (target <= 0))
            + (source - margin) ** 2 * ((source <= margin) & (target > 0)))
    return np.mean(np.sum(np.abs(loss), (1, 2, 3)))


def test_activation_boundary_criterion():
    source, target = RNG.randn(2, 4, 3, 3, 5) * 2
    got = multiple.activation_boundary(tf.constant(source), tf.constant(target), 1.0)
    assert float(got) == pytest.approx(ab_reference(source, target, 1.0))


def test_ab_distillation_with_connectors():
    s, t = feats((4, 8)), [relu(x) for x in feats((6, 10))]
    connectors = multiple.per_stage(multiple.Connector, "connector", [x.shape for x in s],
                                    [x.shape for x in t])
    expected = 0.0
    for i, (a, b, c) in enumerate(zip(s, t, connectors)):
        assert not c.conv.use_bias and c.conv.kernel_regularizer is not None
        assert c.bn.gamma_regularizer is not None and c.bn.momentum == 0.9
        c.bn.gamma.assign(RNG.rand(b.shape[-1]) + 0.5)
        c.bn.beta.assign(RNG.randn(b.shape[-1]) * 0.1)
        projected = a @ c.conv.kernel.numpy()[0, 0].astype("float64")
        normed = batch_norm_train(projected, c.bn.gamma.numpy(), c.bn.beta.numpy())
        expected += ab_reference(normed, b, 1.0) * 2.0 ** i
    got = multiple.ab_distillation([tf.constant(x, tf.float32) for x in s],
                                   [tf.constant(x, tf.float32) for x in t], connectors)
    assert float(got) == pytest.approx(expected * 3e-3, rel=1e-4)


def test_vid():
    s, t = feats((4, 8)), feats((3, 5))
    regressors = multiple.per_stage(multiple.VIDRegressor, "vid", [x.shape for x in s],
                                    [x.shape for x in t])
    expected = 0.0
    for a, b, r in zip(s, t, regressors):
        r.alpha.assign(RNG.randn(*r.alpha.shape))
        x = a
        for i, (fc, bn) in enumerate(zip(r.fcs, r.bns)):
            assert not fc.use_bias and fc.kernel_regularizer is not None
            x = batch_norm_train(x @ fc.kernel.numpy().astype("float64"),
                                 bn.gamma.numpy(), bn.beta.numpy())
            x = relu(x) if i < 2 else x
        variance = np.log1p(np.exp(r.alpha.numpy().astype("float64"))) + 1
        expected += np.mean(np.log(variance) + (b - x) ** 2 / variance) / 2
    assert [fc.units for fc in regressors[0].fcs] == [6, 6, 3]
    assert regressors[0].alpha.regularizer is None
    got = multiple.vid([tf.constant(x, tf.float32) for x in s],
                       [tf.constant(x, tf.float32) for x in t], regressors)
    assert float(got) == pytest.approx(expected, rel=1e-4)


def test_vid_gradients_reach_regressor_and_student():
    s = [tf.Variable(x, dtype=tf.float32) for x in feats((4, 8))]
    t = [tf.constant(x, tf.float32) for x in feats((3, 5))]
    regressors = multiple.per_stage(multiple.VIDRegressor, "vid", [x.shape for x in s],
                                    [x.shape for x in t])
    with tf.GradientTape() as tape:
        loss = multiple.vid(s, t, regressors)
    variables = s + [v for r in regressors for v in r.trainable_variables]
    assert all(g is not None for g in tape.gradient(loss, variables))
