"""DML's step in TF1's order (`train_w_distill.py` runs `Optimizer_w_DML`'s
student op first): the student against the teacher before the step, then the
teacher against the updated student, each update moving the batch-norm
statistics of the network it trains only. The expected step is computed
independently: plain autodiff on copies of the networks, the DML loss written
from TF1's formula, and TF1's first Nesterov momentum step `w - lr * 1.9 * g`."""

import numpy as np
import pytest
import tensorflow as tf

from nets import ResNet
from tf_kd import optimizers
from tf_kd.distillers import DML

LR = 0.1


def networks(seed=0):
    tf.keras.utils.set_random_seed(seed)
    return (ResNet((32, 32, 3), 10, "Student", width=0.125),
            ResNet((32, 32, 3), 10, "Teacher", width=0.125))


def copy(network, weights=None):
    clone = ResNet((32, 32, 3), 10, network.name, width=0.125)
    clone.set_weights(network.get_weights())
    for variable, value in zip(clone.trainable_variables, weights or []):
        variable.assign(value)
    return clone


def tf1_dml(student, teacher):
    """TF1 `Response.DML`: the two KL divergences, halved."""
    def kl(p, q):
        return tf.reduce_mean(tf.reduce_sum(
            tf.nn.softmax(p) * (tf.nn.log_softmax(p) - tf.nn.log_softmax(q)), 1))
    return (kl(teacher, student) + kl(student, teacher)) / 2


def first_step(network, images, labels, training, other_logits):
    """TF1's first update of `network` on `CE + decay + DML(other)`: its new
    weights and the moving statistics its forward pass left."""
    variables = network.trainable_variables
    with tf.GradientTape() as tape:
        logits = network(images, training=training)["logits"]
        loss = (tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
                    tf.one_hot(labels, 10), logits))
                + tf.add_n(network.losses) + tf1_dml(logits, other_logits))
    gradients = tape.gradient(loss, variables)
    weights = [v.numpy() - LR * 1.9 * g.numpy() for v, g in zip(variables, gradients)]
    return weights, [v.numpy() for v in network.non_trainable_variables]


def expected_step(student, teacher, images, labels, teacher_bn_training):
    teacher_before = copy(teacher)(images, training=teacher_bn_training)["logits"]
    student_weights, student_stats = first_step(
        copy(student), images, labels, True, teacher_before)
    student_after = copy(student, student_weights)(images, training=True)["logits"]
    teacher_weights, teacher_stats = first_step(
        copy(teacher), images, labels, teacher_bn_training, student_after)
    return student_weights, student_stats, teacher_weights, teacher_stats


@pytest.mark.parametrize("teacher_bn_training", [True, False])
def test_student_then_teacher_as_tf1(teacher_bn_training):
    student, teacher = networks()
    rng = np.random.RandomState(0)
    images = rng.randn(16, 32, 32, 3).astype("float32")
    labels = rng.randint(0, 10, 16).astype("int32")
    teacher_stats_before = [v.numpy() for v in teacher.non_trainable_variables]
    expected = expected_step(student, teacher, images, labels, teacher_bn_training)

    distiller = DML(student, teacher, teacher_bn_training=teacher_bn_training)
    distiller.compile(optimizer=optimizers.Momentum(LR))
    distiller.train_on_batch(images, labels)

    got = ([v.numpy() for v in student.trainable_variables],
           [v.numpy() for v in student.non_trainable_variables],
           [v.numpy() for v in teacher.trainable_variables],
           [v.numpy() for v in teacher.non_trainable_variables])
    names = ("student weights", "student moving statistics", "teacher weights",
             "teacher moving statistics")
    for name, values, wanted in zip(names, got, expected):
        for value, want in zip(values, wanted):
            assert np.all(np.isfinite(value)), name
            np.testing.assert_allclose(value, want, rtol=2e-5, atol=2e-6, err_msg=name)
    if not teacher_bn_training:     # TF1's teacher normalises with its moving statistics
        for value, before in zip(got[3], teacher_stats_before):
            np.testing.assert_array_equal(value, before)
