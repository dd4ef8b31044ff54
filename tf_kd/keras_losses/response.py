"""Response-based knowledge as a `keras.distillation` loss (`tf_kd.losses.response`)."""

import keras

from tf_kd.keras_losses.base import LayerLoss
from tf_kd.losses import response


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class SoftLogits(LayerLoss):
    """Hinton et al., "Distilling the knowledge in a neural network", 2015
    (TF1 `Soft_logits`): `response.soft_logits`, `KL(softmax(t / T) ||
    softmax(s / T))`, batch mean, without Keras' `T^2`.

    Reads the final outputs (logits) unless layers are named. TF1's objective
    `0.7 CE + 0.3 KL` is `Distiller(..., student_loss_weight=0.7)`.

    Args:
        temperature: T (TF1: 4).
        teacher_layer_name, student_layer_name: layers giving the logits.
    """

    def __init__(self, temperature=4.0, teacher_layer_name=None, student_layer_name=None):
        super().__init__(teacher_layer_name, student_layer_name)
        self.temperature = temperature

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return response.soft_logits(student_outputs, teacher_outputs, self.temperature)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
