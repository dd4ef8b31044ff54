"""Multi-connection knowledge: features at several depths (TF1 `nets/Multiple.py`)."""


from nets import feature_names
from tf_kd import networks
from tf_kd.distillers.base import Distiller, InitializationDistiller
from tf_kd.losses import multiple, response, selectivity


def stage_features(outputs, names):
    return [outputs[name] for name in names]


def stage_shapes(student, teacher, names):
    """The student's and the teacher's shapes of the named features."""
    return ([student.output[n].shape for n in names],
            [teacher.output[n].shape for n in names])


class FitNet(InitializationDistiller):
    """Romero et al., "FitNets: hints for thin deep nets", ICLR 2015.

    Initialisation by the mean squared distance between the student's and the
    teacher's stage features (a 1x1 map on the teacher's feature when the
    widths differ), then CE training.
    """

    reads = (networks.STAGES,)
    same_sizes = True

    def __init__(self, student, teacher, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.names = feature_names(student)
        self.hints = multiple.hint_maps(*stage_shapes(student, teacher, self.names))

    def distillation_loss(self, student, teacher):
        return multiple.fitnet(stage_features(student, self.names),
                               stage_features(teacher, self.names), self.hints)


class AttentionTransfer(Distiller):
    """Zagoruyko & Komodakis, "Paying more attention to attention", ICLR 2017.

    TF1: `CE + decay + AT` with beta 1e3 on the three stage features.
    """

    reads = (networks.STAGES,)
    same_sizes = True

    def __init__(self, student, teacher, beta=1e3, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.beta = beta
        self.names = feature_names(student)

    def train_step(self, data):
        return self.multitask_step(data, lambda student, teacher: multiple.attention_transfer(
            stage_features(student, self.names), stage_features(teacher, self.names),
            self.beta))


class ABDistillation(InitializationDistiller):
    """Heo et al., "Knowledge transfer via distillation of activation
    boundaries formed by hidden neurons", AAAI 2019.

    Initialisation by the alternative-L2 activation-boundary loss (margin 1,
    weight 3e-3) through a 1x1 conv + BN connector per stage, then CE training.
    """

    reads = (networks.STAGES,)
    same_sizes = True

    def __init__(self, student, teacher, margin=1.0, weight=3e-3, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.margin = margin
        self.weight = weight
        self.names = feature_names(student)
        self.connectors = multiple.per_stage(
            multiple.Connector, "connector", *stage_shapes(student, teacher, self.names))

    def distillation_loss(self, student, teacher):
        return multiple.ab_distillation(
            stage_features(student, self.names), stage_features(teacher, self.names),
            self.connectors, self.margin, self.weight)


class VID(Distiller):
    """Ahn et al., "Variational information distillation for knowledge
    transfer", CVPR 2019.

    TF1 (`op_util`): `CE + decay + VID`; the regressors and variances train
    with the student. TF1's `ResNet.py` has no VID branch; as for the other
    multi-connection methods the three stage features are used.
    """

    reads = (networks.STAGES,)
    same_sizes = True

    def __init__(self, student, teacher, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.names = feature_names(student)
        self.regressors = multiple.per_stage(
            multiple.VIDRegressor, "vid", *stage_shapes(student, teacher, self.names))

    def train_step(self, data):
        return self.multitask_step(data, lambda student, teacher: multiple.vid(
            stage_features(student, self.names), stage_features(teacher, self.names),
            self.regressors))


class NST(Distiller):
    """Huang & Wang, "Like what you like: knowledge distill via neuron
    selectivity transfer", arXiv 1707.01219.

    `CE + lambda / 2 * MMD^2 + decay` on the three stage features, lambda as
    the paper sets it for the kernel (`selectivity.KERNEL_WEIGHTS`). With
    `with_kd=True` the Soft_logits term is added (the paper's best
    combination, KD+NST): `0.7 CE + 0.3 KL(T=4) + lambda / 2 * MMD^2`.
    """

    reads = (networks.STAGES,)
    same_sizes = True

    flags = {"nst_kernel": "kernel", "nst_with_kd": "with_kd"}

    def __init__(self, student, teacher, kernel="poly", with_kd=False, **kwargs):
        super().__init__(student, teacher, **kwargs)
        if kernel not in selectivity.KERNEL_WEIGHTS:
            raise ValueError(f"Unknown NST kernel {kernel!r}; valid: "
                             f"{', '.join(selectivity.KERNEL_WEIGHTS)}.")
        self.kernel = kernel
        self.with_kd = with_kd
        self.weight = selectivity.KERNEL_WEIGHTS[kernel] / 2
        self.names = feature_names(student)

    def train_step(self, data):
        return self.multitask_step(data, self.distillation_loss,
                                   class_weight=0.7 if self.with_kd else 1.0)

    def distillation_loss(self, student, teacher):
        loss = self.weight * selectivity.nst(stage_features(student, self.names),
                                             stage_features(teacher, self.names),
                                             self.kernel)
        if self.with_kd:
            loss += 0.3 * response.soft_logits(student["logits"], teacher["logits"], 4.0)
        return loss
