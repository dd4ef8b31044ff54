import numpy as np
import pytest
import tensorflow as tf

from tf_kd import optimizers, schedules


@pytest.mark.parametrize("init_epoch", [0, 40])
def test_learning_rate_boundaries(init_epoch):
    # TF1: x0.1 once epoch >= init_epoch + int(train_epoch * p), p in .3 .6 .8
    lr = lambda e: schedules.learning_rate(e, 0.1, init_epoch, 100)
    for epoch, expected in [(0, 0.1), (init_epoch + 29, 0.1), (init_epoch + 30, 0.01),
                            (init_epoch + 59, 0.01), (init_epoch + 60, 1e-3),
                            (init_epoch + 79, 1e-3), (init_epoch + 80, 1e-4),
                            (init_epoch + 99, 1e-4)]:
        assert lr(epoch) == pytest.approx(expected)


def test_boundaries_use_int_truncation():
    # train_epoch 7: int(2.1)=2, int(4.2)=4, int(5.6)=5
    rates = [schedules.learning_rate(e, 1.0, 0, 7) for e in range(7)]
    np.testing.assert_allclose(rates, [1, 1, .1, .1, .01, .001, .001])


def test_momentum_matches_tf1_update_rule():
    rng = np.random.RandomState(0)
    w0 = rng.randn(5)
    grads = [rng.randn(5) for _ in range(4)]
    rates = [0.1, 0.1, 0.01, 0.01]            # a decay between steps 2 and 3
    var = tf.Variable(w0)
    opt = optimizers.Momentum(0.1, momentum=0.9, use_nesterov=True)
    w, acc = w0.copy(), np.zeros(5)
    for g, lr in zip(grads, rates):
        opt.learning_rate = lr
        opt.apply([tf.constant(g)], [var])
        acc = 0.9 * acc + g                     # TF1 ApplyMomentum, nesterov
        w = w - lr * (g + 0.9 * acc)
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-6)  # lr is float32


def test_momentum_without_nesterov():
    var = tf.Variable([1.0])
    opt = optimizers.Momentum(0.5, momentum=0.9, use_nesterov=False)
    for _ in range(2):
        opt.apply([tf.constant([1.0])], [var])
    np.testing.assert_allclose(var.numpy(), [1 - 0.5 * 1 - 0.5 * 1.9])
    assert optimizers.Momentum.from_config(opt.get_config()).use_nesterov is False
