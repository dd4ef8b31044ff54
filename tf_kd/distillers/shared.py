"""Shared-representation knowledge: relations between two feature maps
(TF1 `nets/Shared.py`)."""

import tensorflow as tf

from nets import feature_names
from tf_kd import networks
from tf_kd.distillers.base import (Distiller, InitializationDistiller,
                                   class_loss, sigmoid, unpack)
from tf_kd.distillers.multiple import stage_features
from tf_kd.losses import shared


class FSP(InitializationDistiller):
    """Yim et al., "A gift from knowledge distillation: fast optimization,
    network minimization and transfer learning", CVPR 2017.

    Initialisation by the distance between the students' and the teacher's
    flow-of-solution-procedure (Gram) matrices of consecutive stages (weight
    1e-3), then CE training.
    """

    reads = (networks.STAGES,)
    same_widths = True

    def __init__(self, student, teacher, weight=1e-3, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.weight = weight
        self.names = feature_names(student)

    def distillation_loss(self, student, teacher):
        return shared.fsp(stage_features(student, self.names),
                          stage_features(teacher, self.names), self.weight)


class KDSVD(Distiller):
    """Lee et al., "Self-supervised knowledge distillation using singular
    value decomposition", ECCV 2018 (`KD-SVD`), and its eigen-decomposition
    variant (`KD-EID`).

    TF1: per variable, the distillation gradient is clipped by norm to
    `||g_CE|| * sigmoid(epoch)` and added to the CE and decay gradients.
    """

    reads = (networks.STAGES,)
    same_widths = True

    def __init__(self, student, teacher, dist_type="SVD", **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.dist_type = dist_type
        self.names = feature_names(student)

    def train_step(self, data):
        images, labels = unpack(data)
        teacher = self.teacher_outputs(images)
        with tf.GradientTape(persistent=True) as tape:
            student = self.student(images, training=True)
            ce = class_loss(labels, student["logits"])
            decay = self.weight_decay()
            distillation = shared.kd_svd(stage_features(student, self.names),
                                         stage_features(teacher, self.names),
                                         self.dist_type)
        self.apply_clipped_gradients(ce, decay, distillation, tape,
                                     self.trainable_variables, sigmoid(self.epoch))
        del tape
        return self.report(ce + decay + distillation, labels, student["logits"],
                           distillation)


class KDEID(KDSVD):
    """KD-SVD with the eigen-decomposition route (`SVD_eid`)."""

    def __init__(self, student, teacher, **kwargs):
        super().__init__(student, teacher, dist_type="EID", **kwargs)
