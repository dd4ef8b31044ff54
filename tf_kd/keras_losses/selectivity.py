"""Neuron selectivity transfer as a `keras.distillation` loss
(`tf_kd.losses.selectivity`)."""

import keras

from tf_kd.keras_losses.base import LayerLoss, same_spatial_size
from tf_kd.losses import selectivity


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class NST(LayerLoss):
    """Huang & Wang, "Like what you like: knowledge distill via neuron
    selectivity transfer", arXiv 1707.01219: `weight * selectivity.nst`, the
    squared MMD between the teacher's and the student's l2-normalised
    channel maps. The widths may differ, the spatial sizes not.

    Args:
        kernel: "linear", "poly" (d = 2, c = 0; the default) or "gaussian".
        weight: the paper's lambda / 2 for the kernel when None
            (`selectivity.KERNEL_WEIGHTS`: 25, 25, 8).
    """

    def __init__(self, teacher_layer_name, student_layer_name, kernel="poly", weight=None):
        super().__init__(teacher_layer_name, student_layer_name)
        if kernel not in selectivity.KERNEL_WEIGHTS:
            raise ValueError(f"Unknown NST kernel {kernel!r}; valid: "
                             f"{', '.join(selectivity.KERNEL_WEIGHTS)}.")
        self.kernel = kernel
        self.weight = selectivity.KERNEL_WEIGHTS[kernel] / 2 if weight is None else weight

    def check_shapes(self, teacher_shape, student_shape):
        same_spatial_size(teacher_shape, student_shape, self)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return self.weight * selectivity.nst([student_outputs], [teacher_outputs], self.kernel)

    def get_config(self):
        return {**super().get_config(), "kernel": self.kernel, "weight": self.weight}
