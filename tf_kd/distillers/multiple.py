"""Multi-connection knowledge: features at several depths (TF1 `nets/Multiple.py`);
beyond TF1, ReviewKD."""

import tensorflow as tf

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


class ReviewKD(Distiller):
    """Chen et al., "Distilling knowledge via knowledge review", CVPR 2021, as
    dvlab-research/ReviewKD (cede6ea6387ae9b6127de0e561507177bf19c11e,
    `CIFAR-100/model/reviewkd.py`, `CIFAR-100/train.py`; mdistiller
    a08d46f10d6102bd6e3f258ca5ac880b020ea259 `mdistiller/distillers/ReviewKD.py`
    and `mdistiller/engine/cfg.py` agree): `CE + min(epoch / 20, 1) * 1.0 *
    HCL + decay` (`train.py`'s `--kd-loss-weight 1.0 --kd-warm-up 20`,
    epochs counted from 0, so the first epoch trains on CE alone).

    The student's stage features after their activation (`feat{i}`, the
    reference's `is_feat=True`) and its pooled vector are reviewed from the
    deepest up by attention-based fusion modules (`multiple.ABF`, trained
    with the student), whose outputs match, by the hierarchical context loss
    (`multiple.hcl`), the teacher's stage features before their activation
    (`feat_noact{i}`, `preact=True`) and its pooled vector. The ABFs' 1x1
    and 3x3 convolutions take the student's widths to the teacher's, and
    nearest-neighbour resizing its sizes. The published runs weight HCL per
    pair (`script/reviewKD.sh`): `--reviewkd_weight`.
    """

    reads = (networks.STAGES, networks.POOL)
    flags = {"reviewkd_weight": "weight", "reviewkd_warmup": "warmup"}

    def __init__(self, student, teacher, weight=1.0, warmup=20, ce_weight=1.0,
                 max_mid_channels=512, **kwargs):
        super().__init__(student, teacher, **kwargs)
        if warmup <= 0:
            raise ValueError(f"ReviewKD's warm-up is a number of epochs > 0, got {warmup}.")
        self.student_names = [*feature_names(student), "pool"]
        self.teacher_names = [*feature_names(teacher, "feat_noact"), "pool"]
        if len(self.teacher_names) != len(self.student_names):
            raise ValueError(
                "ReviewKD cannot distil these networks: the teacher has no outputs feat_noact0, "
                "feat_noact1, ... (its stage features before their last activation), one per "
                "stage; expose them (docs/your_models.md).")
        self.weight, self.warmup, self.ce_weight = weight, warmup, ce_weight
        teacher_shapes = [teacher.output[n].shape for n in self.teacher_names]
        self.out_sizes = [tuple(s[1:3]) if len(s) == 4 else (1, 1) for s in teacher_shapes]
        self.abfs = multiple.review_fusions(
            [student.output[n].shape for n in self.student_names], teacher_shapes,
            max_mid_channels)

    def warmup_factor(self):
        """`min(epoch / warmup, 1)`, the epoch counted from 0 as `train.py`'s."""
        return tf.minimum(tf.cast(self.epoch, tf.float32) / self.warmup, 1.0)

    def train_step(self, data):
        return self.multitask_step(data, self.distillation_loss, class_weight=self.ce_weight)

    def distillation_loss(self, student, teacher):
        reviewed = multiple.review(stage_features(student, self.student_names), self.abfs,
                                   self.out_sizes, training=True)
        teacher_feats = [multiple.as_map(f) for f in stage_features(teacher, self.teacher_names)]
        return self.warmup_factor() * self.weight * multiple.hcl(reviewed, teacher_feats)
