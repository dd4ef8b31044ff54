"""Response-based knowledge as a `keras.distillation` loss (`tf_kd.losses.response`)."""

import keras
import tensorflow as tf

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


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class KD(LayerLoss):
    """Hinton et al. as RepDistiller's `DistillKL` (`response.kd`):
    `T^2 KL(softmax(t / T) || softmax(s / T))`, batch mean; with
    `logit_standardization` (Sun et al., CVPR 2024) on standardised logits.

    RepDistiller's `0.1 CE + 0.9 KD` is `Distiller(..., student_loss_weight=0.1)`;
    with logit standardisation the reference trains `0.1 CE + 9 KD(T=2)`:
    `KD(2.0, True)`, `student_loss_weight=0.1 / 9.1` and the learning rate
    times 9.1.

    Args:
        temperature: T (4; 2 with logit standardisation).
        logit_standardization: standardise both logits first.
        teacher_layer_name, student_layer_name: layers giving the logits.
    """

    def __init__(self, temperature=4.0, logit_standardization=False,
                 teacher_layer_name=None, student_layer_name=None):
        super().__init__(teacher_layer_name, student_layer_name)
        self.temperature = temperature
        self.logit_standardization = logit_standardization

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return response.kd(student_outputs, teacher_outputs, self.temperature,
                           self.logit_standardization)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature,
                "logit_standardization": self.logit_standardization}


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class DKD(LayerLoss):
    """Zhao et al., "Decoupled knowledge distillation", CVPR 2022
    (`response.dkd`): `alpha TCKD + beta NCKD`, optionally on standardised
    logits.

    A `keras.distillation` loss sees no labels: the target class is the
    teacher's top-1 class (the label wherever the teacher is right), and
    there is no warm-up (no epoch either). `tf_kd.distillers.DKD` uses the
    labels and mdistiller's 20-epoch warm-up.

    Args:
        alpha, beta, temperature: mdistiller's CIFAR-100 defaults 1, 8, 4.
        logit_standardization: standardise both logits first.
        teacher_layer_name, student_layer_name: layers giving the logits.
    """

    def __init__(self, alpha=1.0, beta=8.0, temperature=4.0, logit_standardization=False,
                 teacher_layer_name=None, student_layer_name=None):
        super().__init__(teacher_layer_name, student_layer_name)
        self.alpha, self.beta = alpha, beta
        self.temperature = temperature
        self.logit_standardization = logit_standardization

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        target = tf.argmax(teacher_outputs, -1)
        return response.dkd(student_outputs, teacher_outputs, target, self.alpha, self.beta,
                            self.temperature, self.logit_standardization)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta,
                "temperature": self.temperature,
                "logit_standardization": self.logit_standardization}


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class DIST(LayerLoss):
    """Huang et al., "Knowledge distillation from a stronger teacher",
    NeurIPS 2022 (`response.dist`): the inter- and intra-class Pearson
    relations of `softmax(z / tau)`, times `tau^2`. The reference's CIFAR-100
    objective `CE + 2 DIST` is `student_loss_weight=1/3` and the learning
    rate times 3.

    Args:
        beta, gamma, tau: the reference's CIFAR-100 values 1, 1, 4.
        teacher_layer_name, student_layer_name: layers giving the logits.
    """

    def __init__(self, beta=1.0, gamma=1.0, tau=4.0, teacher_layer_name=None,
                 student_layer_name=None):
        super().__init__(teacher_layer_name, student_layer_name)
        self.beta, self.gamma, self.tau = beta, gamma, tau

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return response.dist(student_outputs, teacher_outputs, self.beta, self.gamma, self.tau)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "gamma": self.gamma,
                "tau": self.tau}
