"""Knowledge adaptation for dense prediction (He et al., CVPR 2019)."""

import tensorflow as tf

from nets import feature_names
from tf_kd import networks
from tf_kd.distillers.base import Distiller, class_loss, unpack
from tf_kd.losses import adaptation


class KnowledgeAdaptation(Distiller):
    """He et al., "Knowledge adaptation for efficient semantic segmentation",
    CVPR 2019 (`--Distillation=KA`).

    Initialisation epochs (the paper trains it "within one epoch", at
    learning rate 0.1): only the auto-encoder of the teacher's last feature
    trains, on `||phi_t - D(E(phi_t))||^2 + alpha ||E(phi_t)||_1` plus its
    weight decay. Afterwards it is frozen and the student and its feature
    adapter train on `CE + beta L_adapt + gamma L_aff + decay` (beta 50,
    gamma 1); see `tf_kd.losses.adaptation`. The last feature is the last
    stage's (`feat2`: the ResNet's for classification, the FCN's for
    segmentation).
    """

    reads = (networks.STAGES,)
    default_init_epoch = 1

    def __init__(self, student, teacher, beta=adaptation.BETA,
                 gamma=adaptation.GAMMA, alpha=adaptation.ALPHA, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.beta = beta
        self.gamma = gamma
        self.alpha = alpha
        self.feature = feature_names(student)[-1]
        teacher_shape = teacher.output[self.feature].shape
        self.auto_encoder = adaptation.AutoEncoder(name="auto_encoder")
        self.auto_encoder.build(teacher_shape)
        self.adapter = adaptation.FeatureAdapter(teacher_shape[-1], name="adapter")
        self.adapter.build(student.output[self.feature].shape)

    def train_step(self, data):
        if self.initializing:
            return self.auto_encoder_step(data)
        images, labels = unpack(data)
        teacher_feature = self.teacher_outputs(images)[self.feature]
        code = self.auto_encoder.encode(teacher_feature)
        variables = self.student.trainable_variables + self.adapter.trainable_variables
        with tf.GradientTape() as tape:
            student = self.student(images, training=True)
            student_feature = student[self.feature]
            distillation = (
                self.beta * adaptation.adaptation_loss(code, self.adapter(student_feature))
                + self.gamma * adaptation.affinity_loss(student_feature, teacher_feature))
            loss = (class_loss(labels, student["logits"]) + distillation
                    + self.weight_decay(self.student) + self.weight_decay(self.adapter))
        self.apply_gradients(loss, tape, variables)
        return self.report(loss, labels, student["logits"], distillation)

    def auto_encoder_step(self, data):
        images, labels = unpack(data)
        feature = self.teacher_outputs(images)[self.feature]
        with tf.GradientTape() as tape:
            code = self.auto_encoder.encode(feature)
            reconstruction = adaptation.auto_encoder_loss(
                feature, self.auto_encoder.decode(code), code, self.alpha)
            loss = reconstruction + self.weight_decay(self.auto_encoder)
        self.apply_gradients(loss, tape, self.auto_encoder.trainable_variables)
        logits = self.student(images, training=False)["logits"]
        return self.report(loss, labels, logits, reconstruction)
