"""Multi-connection knowledge as `keras.distillation` losses
(`tf_kd.losses.multiple`).

TF1 sums each of these over the network's stages; here a loss reads one
layer of each model, and the stages are several losses in the distiller's
list (`distillation_loss_weights` then weighs them).
"""

import keras

from tf_kd.keras_losses.base import LayerLoss, TrainableLayerLoss, same_spatial_size
from tf_kd.losses import multiple


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class FitNet(TrainableLayerLoss):
    """Romero et al., "FitNets: hints for thin deep nets", ICLR 2015:
    `multiple.fitnet`, the mean squared distance between the student's
    feature and the teacher's, the latter through a trainable 1x1 map
    (`multiple.hint_maps`, TF1 `Guided/Map`) when the widths differ.

    TF1 uses it only during 40 initialisation epochs (see the docs).
    """

    def __init__(self, teacher_layer_name, student_layer_name, name=None):
        super().__init__(teacher_layer_name, student_layer_name, name=name)

    def check_shapes(self, teacher_shape, student_shape):
        same_spatial_size(teacher_shape, student_shape, self)

    def build(self, teacher_shape, student_shape):
        self.hint_map = multiple.hint_maps([student_shape], [teacher_shape])[0]

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return multiple.fitnet([student_outputs], [teacher_outputs], [self.hint_map])


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class AttentionTransfer(LayerLoss):
    """Zagoruyko & Komodakis, "Paying more attention to attention", ICLR
    2017 (TF1 `AT`): `multiple.attention_transfer`, `beta / 2 * mean((Q_s -
    Q_t)^2)` of the l2-normalised spatial attention maps. The widths may
    differ, the spatial sizes not.

    Args:
        beta: TF1 1e3 (per stage; TF1 sums three stages).
    """

    def __init__(self, teacher_layer_name, student_layer_name, beta=1e3):
        super().__init__(teacher_layer_name, student_layer_name)
        self.beta = beta

    def check_shapes(self, teacher_shape, student_shape):
        same_spatial_size(teacher_shape, student_shape, self)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return multiple.attention_transfer([student_outputs], [teacher_outputs], self.beta)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class ActivationBoundaries(TrainableLayerLoss):
    """Heo et al., "Knowledge transfer via distillation of activation
    boundaries formed by hidden neurons", AAAI 2019 (TF1 `AB`):
    `multiple.ab_distillation` through a trainable connector (1x1
    convolution to the teacher's width and batch norm in training mode,
    `multiple.Connector`).

    TF1 weighs stage `i` by `2**i`: `distillation_loss_weights=[1, 2, 4]`
    for three stages. TF1 uses it only during 40 initialisation epochs.

    Args:
        margin: TF1 1.
        weight: TF1 3e-3.
    """

    def __init__(self, teacher_layer_name, student_layer_name, margin=1.0, weight=3e-3,
                 name=None):
        super().__init__(teacher_layer_name, student_layer_name, name=name)
        self.margin = margin
        self.weight = weight

    def check_shapes(self, teacher_shape, student_shape):
        same_spatial_size(teacher_shape, student_shape, self)

    def build(self, teacher_shape, student_shape):
        self.connector = multiple.per_stage(multiple.Connector, "connector",
                                            [student_shape], [teacher_shape])[0]

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return multiple.ab_distillation([student_outputs], [teacher_outputs], [self.connector],
                                        self.margin, self.weight)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "weight": self.weight}


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class VID(TrainableLayerLoss):
    """Ahn et al., "Variational information distillation for knowledge
    transfer", CVPR 2019: `multiple.vid`, the negative Gaussian
    log-likelihood of the teacher's feature under a trainable regressor of
    the student's (`multiple.VIDRegressor`: mean network and per-channel
    variance)."""

    def __init__(self, teacher_layer_name, student_layer_name, name=None):
        super().__init__(teacher_layer_name, student_layer_name, name=name)

    def check_shapes(self, teacher_shape, student_shape):
        same_spatial_size(teacher_shape, student_shape, self)

    def build(self, teacher_shape, student_shape):
        self.regressor = multiple.per_stage(multiple.VIDRegressor, "regressor",
                                            [student_shape], [teacher_shape])[0]

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return multiple.vid([student_outputs], [teacher_outputs], [self.regressor])
