"""Shared-representation knowledge as `keras.distillation` losses
(`tf_kd.losses.shared`): each relates consecutive layers of a network, so
each reads several layers of each model (`MultiLayerLoss`)."""

import keras

from tf_kd.keras_losses.base import MultiLayerLoss
from tf_kd.losses import shared


def _same_shapes(teacher_shapes, student_shapes, loss):
    """Teacher and student features must match layer by layer (but the batch)."""
    for t, s in zip(teacher_shapes, student_shapes):
        if len(t) != 4 or tuple(t[1:]) != tuple(s[1:]):
            raise ValueError(f"{type(loss).__name__} needs teacher and student feature maps "
                             f"[B, H, W, C] of the same shapes, layer by layer; got teacher "
                             f"{teacher_shapes}, student {student_shapes}.")


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class FSP(MultiLayerLoss):
    """Yim et al., "A gift from knowledge distillation", CVPR 2017 (TF1
    `FSP`): `shared.fsp`, the distance between the student's and the
    teacher's Gram (FSP) matrices of each pair of consecutive named layers;
    a layer twice the size of the next is max-pooled to it.

    TF1 uses it only during 40 initialisation epochs (see the docs).

    Args:
        weight: TF1 1e-3.
    """

    def __init__(self, teacher_layer_names, student_layer_names, weight=1e-3):
        super().__init__(teacher_layer_names, student_layer_names)
        self.weight = weight

    def check_shapes(self, teacher_shapes, student_shapes):
        _same_shapes(teacher_shapes, student_shapes, self)

    def feature_loss(self, student_feats, teacher_feats):
        return shared.fsp(student_feats, teacher_feats, self.weight)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class KDSVD(MultiLayerLoss):
    """Lee et al., "Self-supervised knowledge distillation using singular
    value decomposition", ECCV 2018 (TF1 `KD-SVD`): `shared.kd_svd`, the
    distance between the student's and the teacher's RBF graphs of the
    leading right singular vectors of consecutive named layers.

    Without TF1's per-variable clipping of its gradient (see the docs).

    Args:
        num_teacher: the teacher's singular vectors per layer (TF1 1).
    """

    dist_type = "SVD"

    def __init__(self, teacher_layer_names, student_layer_names, num_teacher=1):
        super().__init__(teacher_layer_names, student_layer_names)
        self.num_teacher = num_teacher

    def check_shapes(self, teacher_shapes, student_shapes):
        _same_shapes(teacher_shapes, student_shapes, self)

    def feature_loss(self, student_feats, teacher_feats):
        return shared.kd_svd(student_feats, teacher_feats, self.dist_type, self.num_teacher)

    def get_config(self):
        return {**super().get_config(), "num_teacher": self.num_teacher}


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class KDEID(KDSVD):
    """KD-SVD through the eigen-decomposition route (TF1 `KD-EID`)."""

    dist_type = "EID"
