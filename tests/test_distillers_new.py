"""KD, DKD, DIST, PKT, SP and CC as distillers: each step's objective with
the reference's weights (DKD's warm-up factor included), on a teacher twice
the student's width; DKD's warm-up under a plain `fit`; the flags; a short
`train.py` run. (`test_distillers.py` runs a step of every method too.)"""


import numpy as np
import pytest
import tensorflow as tf

import nets
from tf_kd import optimizers
from tf_kd.config import Config, validate
from tf_kd.distillers import CorrelationCongruence, get_distiller
from tf_kd.distillers.base import class_loss
from tf_kd.errors import UserError
from tf_kd.losses import relation, response



def make(key, teacher_width=0.125, **kwargs):
    tf.keras.utils.set_random_seed(0)
    student = nets.ResNet((32, 32, 3), 10, "Student", width=0.125)
    teacher = nets.ResNet((32, 32, 3), 10, "Teacher", width=teacher_width)
    distiller = get_distiller(key)(student, teacher=teacher, **kwargs)
    distiller.compile(optimizer=optimizers.Momentum(0.01))
    return distiller


def batch(n=16, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randn(n, 32, 32, 3).astype("float32"), rng.randint(0, 10, n).astype("int32")


# key, constructor arguments, the epoch, expected distillation term(s, t, labels, distiller)
OBJECTIVES = {
    "KD": ("KD", {}, 0, lambda s, t, y, d: 0.9 * response.kd(s["logits"], t["logits"], 4.0)),
    "KD+LS": ("KD", {"logit_standardization": True}, 0,
              lambda s, t, y, d: 9.0 * response.kd(response.standardize(s["logits"]),
                                                   response.standardize(t["logits"]), 2.0)),
    "DKD": ("DKD", {}, 4, lambda s, t, y, d: 5 / 20 * response.dkd(
        s["logits"], t["logits"], y, 1.0, 8.0, 4.0)),
    "DKD+LS": ("DKD", {"logit_standardization": True}, 30, lambda s, t, y, d: response.dkd(
        s["logits"], t["logits"], y, 9.0, 72.0, 2.0, logit_standardization=True)),
    "DIST": ("DIST", {}, 0, lambda s, t, y, d: 2.0 * response.dist(s["logits"], t["logits"],
                                                                   1.0, 1.0, 4.0)),
    "PKT": ("PKT", {}, 0, lambda s, t, y, d: 30000.0 * relation.pkt(s["pool"], t["pool"])),
    "SP": ("SP", {}, 0, lambda s, t, y, d: 3000.0 * relation.similarity_preserving(
        s["feat2"], t["feat2"])),
    "CC": ("CC", {}, 0, lambda s, t, y, d: 0.02 * relation.correlation_congruence(
        d.student_embed.linear(s["pool"]), d.teacher_embed.linear(t["pool"]))),
}
CE_WEIGHT = {"KD": 0.1, "KD+LS": 0.1}
# PKT's term is a KL between two nearly equal distributions (about 1e-6 before its weight
# 30000 on these untrained networks): the float32 round-off of the features, which the
# compiled step's kernels round otherwise than the eager call's where TensorFlow runs
# oneDNN's (on Intel CPUs, or TF_ENABLE_ONEDNN_OPTS=1), moves it by up to a few 1e-4 of itself
TERM_TOLERANCE = {"PKT": 2e-3}


@pytest.mark.parametrize("case", OBJECTIVES)
def test_a_step_trains_on_the_references_objective(case):
    """The first step's logged loss is `w_CE CE + distillation + decay`,
    recomputed here from the loss functions and the reference's weights, on
    a teacher twice the student's width."""
    key, kwargs, epoch, distillation = OBJECTIVES[case]
    distiller = make(key, teacher_width=0.25, **kwargs)
    images, labels = batch()
    s = distiller.student(images, training=True)
    t = distiller.teacher(images, training=False)
    term = float(distillation(s, t, labels, distiller))
    expected = (CE_WEIGHT.get(case, 1.0) * float(class_loss(labels, s["logits"])) + term
                + float(distiller.weight_decay()))
    distiller.on_epoch_begin(epoch)
    logs = distiller.train_on_batch(images, labels, return_dict=True)
    assert logs["distillation_loss"] == pytest.approx(term, rel=TERM_TOLERANCE.get(case, 1e-4))
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    assert term > 0


def test_dkd_warms_up_under_a_plain_fit():
    """mdistiller's `min(epoch / warmup, 1)`, epochs counted from 1, reached
    through `Distiller.fit`'s epoch callback."""
    distiller = make("DKD", warmup=3)
    factors = []

    class Record(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            factors.append(float(self.model.warmup_factor()))

    images, labels = batch(32)
    distiller.fit(images, labels, batch_size=16, epochs=5, verbose=0, callbacks=[Record()])
    np.testing.assert_allclose(factors, [1 / 3, 2 / 3, 1, 1, 1], rtol=1e-6)
    with pytest.raises(ValueError, match="warm-up"):
        type(distiller)(distiller.student, distiller.teacher, warmup=0)


def test_dkd_reads_only_the_labelled_images_of_a_budget_batch():
    """Under `--labels_per_class` a batch holds labelled images first, then
    unlabelled ones; DKD's term needs the labels."""
    distiller = make("DKD")
    distiller.on_epoch_begin(19)
    images, labels = batch(16)
    s = distiller.student(images, training=True)["logits"]
    t = distiller.teacher(images, training=False)["logits"]
    term = float(response.dkd(s[:10], t[:10], labels[:10]))
    logs = distiller.train_on_batch(images, labels[:10], return_dict=True)
    assert logs["distillation_loss"] == pytest.approx(term, rel=1e-4)


def test_cc_embeds_each_width_to_128():
    distiller = make("CC", teacher_width=0.25)
    assert isinstance(distiller, CorrelationCongruence)
    assert distiller.student_embed.linear.kernel.shape == (32, 128)   # ResNet8 at 0.125
    assert distiller.teacher_embed.linear.kernel.shape == (64, 128)   # the teacher at 0.25
    own = {v.path for v in distiller.trainable_variables} - {
        v.path for v in distiller.student.trainable_variables}
    assert len(own) == 4                                               # two kernels, two biases


@pytest.mark.parametrize("flags, says", [
    (dict(dkd_warmup=0), "--dkd_warmup=0: must be at least 1"),
    (dict(dist_tau=0.0), "--dist_tau=0.0: must be a positive number"),
    (dict(ls_base_temperature=-1.0), "--ls_base_temperature=-1.0: must be a positive number"),
    (dict(dkd_beta=-8.0), "--dkd_beta=-8.0: must be >= 0"),
    (dict(ls_kd_weight=float("nan")), "--ls_kd_weight=nan: must be >= 0"),
])
def test_bad_flags_are_refused(flags, says):
    with pytest.raises(UserError, match=says):
        validate(Config(Distillation="DKD", teacher="t.keras", **flags))
