"""The `Distiller` base class: a Keras `Model` that trains a student.

As in the keras.io "Knowledge Distillation" example and `keras.distillation`,
a distiller holds a `student`, a `teacher` (frozen and run in inference mode
unless a method says otherwise) and the method's own trainable parts, and owns
its `train_step`, so `fit()`, callbacks, TensorBoard and `tf.distribute` work
as usual. `call()` and `test_step()` use the student alone.

Methods with an initialisation phase (TF1 `init_epoch`) switch their
`train_step` between phases at `init_epoch`; the switch happens in Python at
the start of an epoch (see `on_epoch_begin`) and retraces the train function,
so each phase compiles to its own graph.
"""

import keras
import tensorflow as tf


class Distiller(keras.Model):
    """Base class of every method.

    Args:
        student: a network returning a dict with at least `logits`.
        teacher: the same for the teacher, or None (plain training).
        init_epoch: length of the method's initialisation phase in epochs
            (TF1: 40 for FitNet, FSP, FT, AB and MHGD, else 0).
    """

    default_init_epoch = 0
    needs_teacher = True        # False: plain training
    pretrained_teacher = True   # False: the teacher trains too (DML)

    def __init__(self, student, teacher=None, init_epoch=None, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.init_epoch = (self.default_init_epoch if init_epoch is None
                           else init_epoch)
        self.epoch = tf.Variable(0, trainable=False, dtype=tf.int64,
                                 name="epoch")
        self.initializing = self.init_epoch > 0
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.distillation_tracker = keras.metrics.Mean(name="distillation_loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(
            name="accuracy")

    # -- Keras plumbing -------------------------------------------------------
    @property
    def metrics(self):
        return [self.loss_tracker, self.distillation_tracker,
                self.accuracy_tracker]

    def call(self, images, training=False):
        return self.student(images, training=training)

    def compile(self, optimizer, **kwargs):
        """Compile, building the optimizer on every trainable variable so that
        each phase can update its own subset."""
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.trainable_variables)

    def on_epoch_begin(self, epoch):
        """Called by `tf_kd.schedules.EpochSchedule` before every epoch."""
        self.epoch.assign(epoch)
        initializing = epoch < self.init_epoch
        if initializing != self.initializing:
            self.initializing = initializing
            self.make_train_function(force=True)

    def test_step(self, data):
        images, labels = data
        logits = self.student(images, training=False)["logits"]
        self.loss_tracker.update_state(class_loss(labels, logits))
        self.accuracy_tracker.update_state(labels, logits)
        return {"loss": self.loss_tracker.result(),
                "accuracy": self.accuracy_tracker.result()}

    # -- helpers for train_step -----------------------------------------------
    def weight_decay(self):
        """Sum of the regularisation losses of every trainable variable
        (TF1 `tf.losses.get_regularization_losses()`)."""
        losses = self.losses
        return tf.add_n(losses) if losses else tf.constant(0.0)

    def teacher_outputs(self, images):
        return self.teacher(images, training=False)

    def apply_gradients(self, loss, tape, variables):
        """Differentiate `loss` (a mean over the local batch) and update
        `variables`; under `tf.distribute` the loss is scaled so that the
        summed replica gradients are those of the global-batch mean."""
        gradients = tape.gradient(scale_for_replicas(loss), variables)
        self.optimizer.apply(gradients, variables)

    def report(self, loss, labels, logits, distillation_loss=None):
        """Update the metrics shown by the progress bar and return them."""
        self.loss_tracker.update_state(loss)
        if distillation_loss is not None:
            self.distillation_tracker.update_state(distillation_loss)
        self.accuracy_tracker.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}


def class_loss(labels, logits):
    """TF1 `softmax_cross_entropy` with one-hot labels, averaged."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=logits))


def num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_for_replicas(loss):
    """`loss / number of replicas`: gradients summed over replicas then give
    the gradient of the mean over the global batch."""
    return loss / num_replicas()


class Baseline(Distiller):
    """No distillation (TF1 `--Distillation=None`): CE + weight decay."""

    needs_teacher = False

    def train_step(self, data):
        images, labels = data
        variables = self.student.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.student(images, training=True)["logits"]
            loss = class_loss(labels, logits) + self.weight_decay()
        self.apply_gradients(loss, tape, variables)
        return self.report(loss, labels, logits)
