"""The `Distiller` base class: a Keras `Model` that trains a student.

As in the keras.io "Knowledge Distillation" example and `keras.distillation`,
a distiller holds a `student`, a `teacher` (frozen and run in inference mode
unless a method says otherwise) and the method's own trainable parts, and owns
its `train_step`, so `fit()`, callbacks, TensorBoard and `tf.distribute` work
as usual. `call()` and `test_step()` use the student alone.

Methods with an initialisation phase (TF1 `init_epoch`) switch their
`train_step` between phases at `init_epoch`; the switch happens in Python at
the start of an epoch (`on_epoch_begin`, which `fit` calls) and retraces the
train function, so each phase compiles to its own graph.

For a dense-prediction student (`logits` of shape [B, H, W, classes]) the
accuracy is the pixel accuracy and the mean intersection over union of the
classes (`miou`) is tracked too.
"""

import keras
import tensorflow as tf

from tf_kd import networks


class Distiller(keras.Model):
    """Base class of every method.

    Args:
        student: a network returning a dict with at least `logits` and what
            the method `reads` (`tf_kd.networks`).
        teacher: the same for the teacher, or None (plain training).
        init_epoch: length of the method's initialisation phase in epochs
            (TF1: 40 for FitNet, FSP, FT, AB and MHGD, else 0).
    """

    default_init_epoch = 0
    needs_teacher = True        # False: plain training
    pretrained_teacher = True   # False: the teacher trains too (DML)
    data_free = False           # True: trains on a transfer set, not the training split (DFKD)
    # True: each training batch is `((images, indices), labels)`, `indices`
    # the images' places in the training split, and the constructor takes
    # that split's labels as `train_labels` (CRD's memory banks).
    example_indices = False
    # What the method reads besides `logits` (`tf_kd.networks.STAGES`, `POOL`),
    # and which stage shapes must be equal in student and teacher.
    reads = ()
    same_widths = False
    same_sizes = False
    # The `train.py` flags only this method takes, each with the constructor
    # argument it sets (None: read by the run, e.g. DFKD's synthesis).
    flags = {}

    def __init__(self, student, teacher=None, init_epoch=None, **kwargs):
        networks.check(type(self), student, teacher)
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
        logits_shape = student.output["logits"].shape
        self.miou_tracker = (keras.metrics.MeanIoU(logits_shape[-1], name="miou",
                                                   sparse_y_pred=False)
                             if len(logits_shape) == 4 else None)

    # -- Keras plumbing -------------------------------------------------------
    @property
    def metrics(self):
        segmentation = [self.miou_tracker] if self.miou_tracker is not None else []
        distillation = [self.distillation_tracker] if self.needs_teacher else []
        return [self.loss_tracker, *distillation, self.accuracy_tracker, *segmentation]

    def call(self, images, training=False):
        return self.student(images, training=training)

    def compile(self, optimizer, **kwargs):
        """Compile, building the optimizer on every trainable variable so that
        each phase can update its own subset."""
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.trainable_variables)
        self.built = True   # every part was built on construction

    def fit(self, x=None, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, the method's phase chosen before every epoch
        (`on_epoch_begin`) whatever the callbacks: a plain `fit` leaves an
        initialisation phase at `init_epoch` as `train.py` does. A
        `tf.data.Dataset` is read as it comes (it shuffles itself)."""
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)
        return super().fit(x, *args, callbacks=[*(callbacks or []), _Phases()], **kwargs)

    def on_epoch_begin(self, epoch):
        """Enter `epoch` (0-based): the phase it belongs to, and its number
        for the methods whose losses depend on it."""
        self.epoch.assign(epoch)
        initializing = epoch < self.init_epoch
        if initializing != self.initializing:
            self.initializing = initializing
            self.make_train_function(force=True)

    def test_step(self, data):
        images, labels = unpack(data)
        logits = self.student(images, training=False)["logits"]
        self.loss_tracker.update_state(class_loss(labels, logits))
        self.accuracy_tracker.update_state(labels, logits)
        results = {"loss": self.loss_tracker.result(),
                   "accuracy": self.accuracy_tracker.result()}
        if self.miou_tracker is not None:
            self.miou_tracker.update_state(labels, logits)
            results["miou"] = self.miou_tracker.result()
        return per_worker(results)

    def loss_scale(self):
        """The loss scale of a `LossScaleOptimizer` (mixed float16), else None."""
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            return self.optimizer.scale_loss(tf.constant(1.0))
        return None

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Nothing to build: every part is built on construction. (Keras'
        symbolic build would also reduce a distributed batch with MEAN,
        which fails under MultiWorkerMirroredStrategy, Keras 3.15.)"""

    # -- helpers for train_step -----------------------------------------------
    def weight_decay(self, module=None):
        """Sum of the regularisation losses of the trainable variables of
        `module` (default: the distiller, i.e. the student and the method's
        parts; TF1 `tf.losses.get_regularization_losses()`)."""
        losses = (module or self).losses
        return tf.add_n(losses) if losses else tf.constant(0.0)

    def teacher_outputs(self, images):
        return self.teacher(images, training=False)

    def apply_gradients(self, loss, tape, variables):
        """Differentiate `loss` (a mean over the local batch) and update
        `variables`; under `tf.distribute` the loss is scaled so that the
        summed replica gradients are those of the global-batch mean."""
        gradients = replica_gradients(tape, loss, variables, self.loss_scale())
        self.optimizer.apply(*zip(*[(g, v) for g, v in zip(gradients, variables)
                                    if g is not None]))

    def apply_distillation_gradients(self, distillation_loss, decay, tape,
                                     variables):
        """TF1 `Optimizer_w_Initializer`'s distillation phase: only the
        variables the distillation loss reaches are updated, by the gradient
        of `distillation_loss + decay`. `tape` (persistent) recorded both."""
        gradients = replica_gradients(tape, distillation_loss, variables, self.loss_scale())
        decays = replica_gradients(tape, decay, variables, self.loss_scale())
        pairs = [(g + w if w is not None else g, v)
                 for g, w, v in zip(gradients, decays, variables) if g is not None]
        self.optimizer.apply(*zip(*pairs))

    def apply_clipped_gradients(self, class_loss, decay, distillation_loss,
                                tape, variables, clip_factor):
        """TF1 `Optimizer_w_Distillation` for KD-SVD and `Optimizer_w_MHGD`:
        per variable, `g_CE + g_decay + clip_by_norm(g_dist, ||g_CE|| *
        clip_factor)`. Under `tf.distribute` the gradients are summed over
        replicas before clipping, so the bound uses the global-batch gradient.
        `tape` (persistent) recorded the three losses."""
        parts = [cross_replica_sum(replica_gradients(tape, loss, variables, self.loss_scale()))
                 for loss in (class_loss, decay, distillation_loss)]
        # TF1 leaves a variable the class loss does not reach untouched; the
        # optimizer sums over replicas again, so each replica hands its share
        pairs = [(clipped_sum(c, w, d, clip_factor) / num_replicas(), v)
                 for c, w, d, v in zip(*parts, variables) if c is not None]
        self.optimizer.apply(*zip(*pairs))

    def class_step(self, data):
        """A training step on `CE + weight decay` (TF1 `Distillation=None`
        and the main phase of the initialisation methods)."""
        images, labels = unpack(data)
        with tf.GradientTape() as tape:
            logits = self.student(images, training=True)["logits"]
            loss = class_loss(labels, logits) + self.weight_decay()
        self.apply_gradients(loss, tape, self.trainable_variables)
        return self.report(loss, labels, logits)

    def multitask_step(self, data, distillation_fn, class_weight=1.0,
                       distillation_weight=1.0):
        """TF1 `Optimizer_w_Distillation`'s multi-task case (Soft_logits, AT,
        RKD, VID): the student and the method's parts train on
        `class_weight * CE + distillation_weight * distillation + decay`,
        with `distillation_fn(student_outputs, teacher_outputs)`."""
        images, labels = unpack(data)
        teacher = self.teacher_outputs(images)
        with tf.GradientTape() as tape:
            student = self.student(images, training=True)
            distillation = distillation_fn(student, teacher)
            loss = (class_weight * class_loss(labels, student["logits"])
                    + distillation_weight * distillation + self.weight_decay())
        self.apply_gradients(loss, tape, self.trainable_variables)
        return self.report(loss, labels, student["logits"], distillation)

    def report(self, loss, labels, logits, distillation_loss=None):
        """Update the metrics shown by the progress bar and return them."""
        self.loss_tracker.update_state(loss)
        if distillation_loss is not None:
            self.distillation_tracker.update_state(distillation_loss)
        logits = labelled(labels, logits)
        self.accuracy_tracker.update_state(labels, logits)
        if self.miou_tracker is not None:
            self.miou_tracker.update_state(labels, logits)
        return per_worker({m.name: m.result() for m in self.metrics})


class _Phases(keras.callbacks.Callback):
    """Tells the distiller which epoch starts (`Distiller.fit` adds it)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.on_epoch_begin(epoch)


def unpack(data):
    """`(images, labels)` of a batch (Keras may append sample weights)."""
    images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
    return images, labels


def labelled(labels, outputs):
    """The rows of `outputs` that `labels` label: all of them, or under a
    labelled-data budget (`dataloader.budget`) the first ones, the images
    after them having no labels."""
    if outputs.shape[0] is not None and outputs.shape[0] == labels.shape[0]:
        return outputs
    return outputs[:tf.shape(labels)[0]]


def class_loss(labels, logits):
    """TF1 `softmax_cross_entropy` with one-hot labels, averaged over the
    labelled images."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=labelled(labels, logits)))


def clipped_sum(class_grad, decay_grad, distillation_grad, clip_factor):
    """`g_CE + g_decay + clip_by_norm(g_dist, ||g_CE|| * clip_factor)`."""
    total = class_grad
    if decay_grad is not None:
        total = total + decay_grad
    if distillation_grad is not None:
        bound = tf.norm(class_grad) * clip_factor
        total = total + tf.clip_by_norm(distillation_grad, bound)
    return total


def sigmoid(x):
    """TF1 `op_util.sigmoid(x, 0)`: the logistic function, 1 above 1 - 1e-8."""
    s = 1 / (1 + tf.exp(-tf.cast(x, tf.float32)))
    return tf.where(s > 1 - 1e-8, tf.ones_like(s), s)


def per_worker(results):
    """`results` as Keras' multi-worker reduction needs them: it takes the
    MEAN over axis 0 across workers (Keras 3.15), so each scalar gets one."""
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results


def cross_replica_sum(gradients):
    """Sum gradients over replicas (identity outside `tf.distribute`)."""
    context = tf.distribute.get_replica_context()
    if num_replicas() == 1 or context is None:
        return gradients
    present = [g for g in gradients if g is not None]
    summed = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, present))
    return [next(summed) if g is not None else None for g in gradients]


def num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_gradients(tape, loss, variables, scale=None):
    """Gradients of `loss / number of replicas`: summed over the replicas
    they give the gradient of the mean over the global batch. `scale`
    (float16 loss scaling) multiplies the gradient from the start of the
    backward pass; the optimizer divides it out (clipping against another
    gradient of the same scale is unchanged by it)."""
    replicas = num_replicas()
    gradients = tape.gradient(loss, variables,
                              output_gradients=None if scale is None
                              else tf.cast(scale, loss.dtype))
    return [g / replicas if g is not None else None for g in gradients]


class Baseline(Distiller):
    """No distillation (TF1 `--Distillation=None`): CE + weight decay."""

    needs_teacher = False

    def train_step(self, data):
        return self.class_step(data)


class InitializationDistiller(Distiller):
    """Methods that use the teacher only to initialise the student (TF1
    `Optimizer_w_Initializer`: FitNet, FSP, AB).

    During the `init_epoch` initialisation epochs the variables the
    distillation loss reaches train on `distillation + weight decay`;
    afterwards the student trains on `CE + weight decay` alone. TF1 meant to
    reset the momentum at the switch, but its variable-name test never
    matches, so nothing is reset, here either. Subclasses define
    `distillation_loss(student_outputs, teacher_outputs)`.
    """

    default_init_epoch = 40

    def train_step(self, data):
        if not self.initializing:
            return self.class_step(data)
        images, labels = unpack(data)
        teacher = self.teacher_outputs(images)
        with tf.GradientTape(persistent=True) as tape:
            student = self.student(images, training=True)
            distillation = self.distillation_loss(student, teacher)
            decay = self.weight_decay()
        self.apply_distillation_gradients(distillation, decay, tape,
                                          self.trainable_variables)
        del tape
        return self.report(distillation, labels, student["logits"], distillation)
