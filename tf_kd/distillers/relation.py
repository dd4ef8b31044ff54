"""Relational knowledge: relations between examples (TF1 `nets/Relation.py`)."""

import numpy as np
import tensorflow as tf

from nets import feature_names
from tf_kd import networks
from tf_kd.distillers.base import Distiller, class_loss, sigmoid, unpack
from tf_kd.distillers.multiple import stage_features
from tf_kd.losses import relation


class RKD(Distiller):
    """Park et al., "Relational knowledge distillation", CVPR 2019.

    TF1: `CE + decay + 25 * distance + 50 * angle` on the pooled vectors.
    """

    reads = (networks.POOL,)

    def __init__(self, student, teacher, weights=(25.0, 50.0), **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.loss_weights = tuple(weights)

    def train_step(self, data):
        return self.multitask_step(data, lambda student, teacher: relation.rkd(
            student["pool"], teacher["pool"], self.loss_weights))


class MHGD(Distiller):
    """Lee & Song, "Graph-based knowledge distillation by multi-head
    attention network", BMVC 2019.

    Each stage is compressed to its leading right singular vector (teacher
    one, student four aligned to it, by `svd_eid`). Initialisation epochs:
    only the multi-head attention networks train, on the estimator loss
    `1 - cosine` plus `5e-4 * sum(w**2)` on their weights. Afterwards they are
    frozen and the student trains on `CE + decay` plus the KL divergence
    between the `tanh` attention graphs, whose gradient is clipped to
    `||g_CE|| * sigmoid(epoch - init_epoch)` per variable.
    """

    reads = (networks.STAGES,)
    same_widths = True
    default_init_epoch = 40

    def __init__(self, student, teacher, num_head=8, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.names = feature_names(student)
        dims = [teacher.output[n].shape[-1] for n in self.names]
        self.graphs = relation.multi_head_graphs(dims, num_head)
        # The head dropping's noise is drawn from (this number, step): a
        # resumed run draws it as the uninterrupted one did.
        self.drop_seed = int(np.random.randint(2 ** 31))

    def graph_variables(self):
        return [v for graph in self.graphs for v in graph.trainable_variables]

    def train_step(self, data):
        if self.initializing:
            return self.estimator_step(data)
        images, labels = unpack(data)
        teacher = stage_features(self.teacher_outputs(images), self.names)
        with tf.GradientTape(persistent=True) as tape:
            student = self.student(images, training=True)
            ce = class_loss(labels, student["logits"])
            decay = self.weight_decay(self.student)
            student_vectors, teacher_vectors = relation.singular_vectors(
                stage_features(student, self.names), teacher)
            distillation = relation.mhgd(student_vectors, teacher_vectors, self.graphs)
        self.apply_clipped_gradients(ce, decay, distillation, tape,
                                     self.student.trainable_variables,
                                     sigmoid(self.epoch - self.init_epoch))
        del tape
        return self.report(ce + decay + distillation, labels, student["logits"],
                           distillation)

    def estimator_step(self, data):
        images, labels = unpack(data)
        teacher = stage_features(self.teacher_outputs(images), self.names)
        vectors = [relation.teacher_singular_vector(f) for f in teacher]
        with tf.GradientTape() as tape:
            seed = tf.stack([tf.constant(self.drop_seed, tf.int64),
                             tf.convert_to_tensor(self.optimizer.iterations)])
            loss = relation.mha_loss(vectors, self.graphs, seed=seed)
        self.apply_gradients(loss, tape, self.graph_variables())
        logits = self.student(images, training=False)["logits"]
        return self.report(loss, labels, logits, loss)
