"""Data-free distillation on a synthesised transfer set (Wang, AAAI 2021)."""

import tensorflow as tf

from tf_kd.distillers.base import Distiller, unpack
from tf_kd.losses import response
from tf_kd.transfer_set import Synthesis


class DataFreeKD(Distiller):
    """Wang, "Data-free knowledge distillation with soft targeted transfer
    set synthesis", AAAI 2021, arXiv 2104.04868 (`--Distillation=DFKD`).

    Trains on the pseudo samples of `tf_kd.transfer_set`, never on the
    training split. The student learns the teacher's outputs on each
    (augmented) pseudo sample, the paper's `L_CE(T(x, W_T, tau),
    S(x, W_S, tau))`: `tau^2 KL(softmax(a_T / tau) || softmax(a_S / tau))`
    plus weight decay. The KL differs from that cross-entropy by the
    teacher's entropy, a constant; the `tau^2` (Hinton et al.) keeps the
    gradient of this only loss from shrinking as `1 / tau^2`. The labels fed
    with the images are the teacher's top-1 classes of the pseudo samples, so
    the training accuracy is the student's agreement with the teacher.
    """

    data_free = True
    flags = {"dfkd_tau": "tau", "transfer_set": None, "transfer_size": None,
             "dfkd_noise_baseline": None, "dfkd_sigma": None, "dfkd_steps": None,
             "dfkd_learning_rate": None, "dfkd_activation_weight": None}

    def __init__(self, student, teacher, tau=Synthesis.tau, **kwargs):
        super().__init__(student, teacher, **kwargs)
        if len(student.output["logits"].shape) != 2:
            raise ValueError("DFKD synthesises a classifier's transfer set; "
                             "the networks predict dense maps.")
        self.tau = tau

    def train_step(self, data):
        images, labels = unpack(data)
        teacher_logits = self.teacher_outputs(images)["logits"]
        with tf.GradientTape() as tape:
            logits = self.student(images, training=True)["logits"]
            distillation = self.tau ** 2 * response.soft_logits(
                logits, teacher_logits, self.tau)
            loss = distillation + self.weight_decay()
        self.apply_gradients(loss, tape, self.student.trainable_variables)
        return self.report(loss, labels, logits, distillation)
