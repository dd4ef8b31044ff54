"""Response-based knowledge: the network's outputs (TF1 `nets/Response.py`);
beyond TF1, KD as RepDistiller trains it, DKD and DIST, with logit
standardisation as an option of KD and DKD."""

import tensorflow as tf

from nets import feature_names
from tf_kd import networks
from tf_kd.distillers.base import Distiller, class_loss, labelled, unpack
from tf_kd.losses import response


class SoftLogits(Distiller):
    """Hinton et al., "Distilling the knowledge in a neural network", 2015.

    TF1: `0.7 * CE + 0.3 * KL(T=4) + weight decay`, without the T^2 factor;
    `t_squared` multiplies the KL by T^2, as the paper does to keep its
    gradient's scale independent of T.
    """

    flags = {"kd_alpha": "alpha", "kd_temperature": "temperature",
             "kd_t_squared": "t_squared"}

    def __init__(self, student, teacher, temperature=4.0, alpha=0.7, t_squared=False,
                 **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.temperature = temperature
        self.alpha = alpha
        self.t_squared = t_squared

    def train_step(self, data):
        scale = self.temperature ** 2 if self.t_squared else 1.0
        return self.multitask_step(
            data, lambda student, teacher: response.soft_logits(
                student["logits"], teacher["logits"], self.temperature),
            class_weight=self.alpha, distillation_weight=(1 - self.alpha) * scale)


class DML(Distiller):
    """Zhang et al., "Deep mutual learning", CVPR 2018.

    Teacher and student both train from scratch, in TF1's order
    (`train_w_distill.py` unpacks `op_util.Optimizer_w_DML`'s
    `(teacher_op, student_op)` as `train_op, teacher_train_op` and runs
    `teacher_train_op` first): each step first updates the student with
    `CE_s + decay_s + DML` against the teacher's logits from before the step,
    then the teacher with `CE_t + decay_t + DML` against the updated
    student's logits (its forward pass in training mode). Each update's
    forward passes change the moving batch-norm statistics of the network it
    trains only, as TF1's update ops did.

    TF1 feeds the teacher's batch norm `is_training = not is_training`, so
    the teacher trains with its initial moving statistics (0 and 1) as a
    fixed affine map; without normalisation its logits start with a standard
    deviation near 80. By default the teacher's batch norm therefore trains
    with batch statistics, like the student's; `teacher_bn_training=False`
    restores the TF1 mode.
    """

    pretrained_teacher = False

    def __init__(self, student, teacher, teacher_bn_training=True, **kwargs):
        super().__init__(student, teacher, **kwargs)
        teacher.trainable = True
        self.teacher_bn_training = teacher_bn_training

    def train_step(self, data):
        images, labels = unpack(data)
        teacher_logits = tf.stop_gradient(
            logits_keeping_statistics(self.teacher, images, self.teacher_bn_training))
        with tf.GradientTape() as tape:
            student_logits = self.student(images, training=True)["logits"]
            distillation = response.dml(student_logits, teacher_logits)
            loss = (class_loss(labels, student_logits)
                    + self.weight_decay(self.student) + distillation)
        self.apply_gradients(loss, tape, self.student.trainable_variables)
        updated_student = tf.stop_gradient(
            logits_keeping_statistics(self.student, images, True))
        with tf.GradientTape() as tape:
            teacher_logits = self.teacher(images, training=self.teacher_bn_training)["logits"]
            teacher_loss = (class_loss(labels, teacher_logits)
                            + self.weight_decay(self.teacher)
                            + response.dml(updated_student, teacher_logits))
        self.apply_gradients(teacher_loss, tape, self.teacher.trainable_variables)
        return self.report(loss, labels, student_logits, distillation)


def logits_keeping_statistics(network, images, training):
    """`network`'s logits, its moving batch-norm statistics (its
    non-trainable variables) left as they were even in training mode."""
    if not training:
        return network(images, training=False)["logits"]
    moving = network.non_trainable_variables
    saved = [tf.identity(v.value) for v in moving]
    logits = network(images, training=True)["logits"]
    for variable, value in zip(moving, saved):
        variable.assign(value)
    return logits


class FactorTransfer(Distiller):
    """Kim et al., "Paraphrasing complex network: network compression via
    factor transfer", NeurIPS 2018.

    Initialisation epochs: only the paraphraser trains, to reconstruct the
    teacher feature (L1) plus `5e-4 * sum(w**2)` on its kernels. Afterwards the
    paraphraser is fixed and the student and its translator train with
    `CE + decay + 500 * |F_T - F_S|`. TF1 builds its `feats_noact` list from
    the `feat` collection, so the factors come from the post-ReLU `feat2` of
    both networks, not the pre-activation one; that is kept (`feature`:
    by default the last stage feature, `feat2` on the TF1 networks).
    """

    reads = (networks.STAGES,)
    same_sizes = True
    default_init_epoch = 40

    def __init__(self, student, teacher, rate=0.5, beta=500.0, feature=None, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.beta = beta
        self.feature = feature = feature or feature_names(teacher)[-1]
        channels = teacher.output[feature].shape[-1]
        self.paraphraser = response.Paraphraser(rate=rate, name="paraphraser")
        self.translator = response.Translator(channels, rate=rate, name="translator")
        self.paraphraser.build(teacher.output[feature].shape)
        self.translator.build(student.output[feature].shape)

    def train_step(self, data):
        if self.initializing:
            return self.paraphraser_step(data)
        images, labels = unpack(data)
        teacher_factor = self.paraphraser.factor(self.teacher_outputs(images)[self.feature])
        variables = (self.student.trainable_variables
                     + self.translator.trainable_variables)
        with tf.GradientTape() as tape:
            student = self.student(images, training=True)
            distillation = self.beta * response.factor_transfer(
                self.translator(student[self.feature]), teacher_factor)
            loss = (class_loss(labels, student["logits"]) + self.weight_decay()
                    + distillation)
        self.apply_gradients(loss, tape, variables)
        return self.report(loss, labels, student["logits"], distillation)

    def paraphraser_step(self, data):
        images, labels = unpack(data)
        teacher = self.teacher_outputs(images)
        feature = teacher[self.feature]
        with tf.GradientTape() as tape:
            reconstruction = response.reconstruction_loss(
                feature, self.paraphraser(feature))
            loss = reconstruction + self.paraphraser.weight_penalty()
        self.apply_gradients(loss, tape, self.paraphraser.trainable_variables)
        logits = self.student(images, training=False)["logits"]
        return self.report(loss, labels, logits, reconstruction)


class KD(Distiller):
    """Hinton et al., "Distilling the knowledge in a neural network", 2015,
    as RepDistiller trains it (HobbitLong/RepDistiller
    b84f547c5db6a35318d4671d7d5c4de74c822403, `distiller_zoo/KD.py`; the
    README's `train_student.py --distill kd -r 0.1 -a 0.9 -b 0`, `--kd_T 4`):
    `0.1 CE + 0.9 T^2 KL(T=4) + decay` (`response.kd`).

    `logit_standardization` (Sun et al., CVPR 2024; sunshangquan/
    logit-standardization-KD f6e5aa5172bad618e801163c3385322eea673754,
    `mdistiller/distillers/KD.py`): the KL reads `standardize`d logits and,
    as that repository's `tools/train.py --logit-stand --base-temp 2
    --kd-weight 9` sets for KD, its temperature and weight become
    `base_temperature` and `standardized_weight`; the CE keeps its weight.
    """

    flags = {"kd_temperature": "temperature",
             "logit_standardization": "logit_standardization",
             "ls_base_temperature": "base_temperature", "ls_kd_weight": "standardized_weight"}

    def __init__(self, student, teacher, temperature=4.0, ce_weight=0.1, kd_weight=0.9,
                 logit_standardization=False, base_temperature=2.0, standardized_weight=9.0,
                 **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.logit_standardization = logit_standardization
        self.temperature = base_temperature if logit_standardization else temperature
        self.kd_weight = standardized_weight if logit_standardization else kd_weight
        self.ce_weight = ce_weight

    def train_step(self, data):
        return self.multitask_step(
            data, lambda student, teacher: self.kd_weight * response.kd(
                student["logits"], teacher["logits"], self.temperature,
                self.logit_standardization),
            class_weight=self.ce_weight)


class DKD(Distiller):
    """Zhao et al., "Decoupled knowledge distillation", CVPR 2022
    (megvii-research/mdistiller a08d46f10d6102bd6e3f258ca5ac880b020ea259,
    `mdistiller/distillers/DKD.py`; defaults of `mdistiller/engine/cfg.py`,
    which `configs/cifar100/dkd/res32x4_res8x4.yaml` keeps):
    `CE + min(epoch / warmup, 1) (alpha TCKD + beta NCKD) + decay` with
    alpha 1, beta 8, T 4, warm-up 20 epochs (`response.dkd`). Epochs count
    from 1 there: the first epoch's weight is `1 / warmup`. DKD needs the
    labels: under a labelled-data budget it reads the labelled images only.

    `logit_standardization` (logit-standardization-KD
    f6e5aa5172bad618e801163c3385322eea673754, `mdistiller/distillers/DKD.py`,
    its `tools/train.py --logit-stand --base-temp 2 --kd-weight 9`): the
    logits are `standardize`d, T becomes `base_temperature` and alpha and
    beta are multiplied by `standardized_weight`.
    """

    flags = {"dkd_alpha": "alpha", "dkd_beta": "beta", "dkd_temperature": "temperature",
             "dkd_warmup": "warmup", "logit_standardization": "logit_standardization",
             "ls_base_temperature": "base_temperature", "ls_kd_weight": "standardized_weight"}

    def __init__(self, student, teacher, alpha=1.0, beta=8.0, temperature=4.0, warmup=20,
                 ce_weight=1.0, logit_standardization=False, base_temperature=2.0,
                 standardized_weight=9.0, **kwargs):
        super().__init__(student, teacher, **kwargs)
        if warmup < 1:
            raise ValueError(f"DKD's warm-up is a number of epochs >= 1, got {warmup}.")
        scale = standardized_weight if logit_standardization else 1.0
        self.alpha, self.beta = alpha * scale, beta * scale
        self.temperature = base_temperature if logit_standardization else temperature
        self.logit_standardization = logit_standardization
        self.warmup = warmup
        self.ce_weight = ce_weight

    def warmup_factor(self):
        """`min(epoch / warmup, 1)`, the epoch counted from 1 as mdistiller's."""
        return tf.minimum(tf.cast(self.epoch + 1, tf.float32) / self.warmup, 1.0)

    def train_step(self, data):
        images, labels = unpack(data)
        teacher_logits = labelled(labels, self.teacher_outputs(images)["logits"])
        with tf.GradientTape() as tape:
            logits = self.student(images, training=True)["logits"]
            distillation = self.warmup_factor() * response.dkd(
                labelled(labels, logits), teacher_logits, labels, self.alpha, self.beta,
                self.temperature, self.logit_standardization)
            loss = (self.ce_weight * class_loss(labels, logits) + distillation
                    + self.weight_decay())
        self.apply_gradients(loss, tape, self.trainable_variables)
        return self.report(loss, labels, logits, distillation)


class DIST(Distiller):
    """Huang et al., "Knowledge distillation from a stronger teacher",
    NeurIPS 2022 (hunto/image_classification_sota
    6f7a70a1dd57fd88413d83909d3d53243068f701, `lib/models/losses/dist_kd.py`;
    CIFAR-100 setting `configs/strategies/distill/dist_cifar.yaml`: `kd:
    dist_t4`, `ori_loss_weight: 1`, `kd_loss_weight: 2`):
    `CE + 2 DIST(beta=1, gamma=1, tau=4) + decay` (`response.dist`).
    """

    flags = {"dist_beta": "beta", "dist_gamma": "gamma", "dist_tau": "tau"}

    def __init__(self, student, teacher, beta=1.0, gamma=1.0, tau=4.0, weight=2.0, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.beta, self.gamma, self.tau = beta, gamma, tau
        self.weight = weight

    def train_step(self, data):
        return self.multitask_step(data, lambda student, teacher: self.weight * response.dist(
            student["logits"], teacher["logits"], self.beta, self.gamma, self.tau))
