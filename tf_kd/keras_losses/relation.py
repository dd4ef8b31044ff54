"""Relational knowledge as a `keras.distillation` loss (`tf_kd.losses.relation`)."""

import keras

from tf_kd.keras_losses.base import LayerLoss
from tf_kd.losses import relation


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class RKD(LayerLoss):
    """Park et al., "Relational knowledge distillation", CVPR 2019:
    `relation.rkd`, the Huber distances between the teacher's and the
    student's distance and angle potentials over the batch, on embeddings
    `[B, C]` (l2-normalised; the sizes may differ). TF1 reads the pooled
    vectors; the final outputs when no layer is named.

    Args:
        distance_weight, angle_weight: TF1 `ResNet.py`'s 25 and 50.
    """

    def __init__(self, teacher_layer_name=None, student_layer_name=None,
                 distance_weight=25.0, angle_weight=50.0):
        super().__init__(teacher_layer_name, student_layer_name)
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight

    def check_shapes(self, teacher_shape, student_shape):
        if len(teacher_shape) != 2 or len(student_shape) != 2:
            raise ValueError(f"RKD reads embeddings [B, C] (e.g. pooled features); got teacher "
                             f"{teacher_shape}, student {student_shape}.")

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return relation.rkd(student_outputs, teacher_outputs,
                            (self.distance_weight, self.angle_weight))

    def get_config(self):
        return {**super().get_config(), "distance_weight": self.distance_weight,
                "angle_weight": self.angle_weight}
