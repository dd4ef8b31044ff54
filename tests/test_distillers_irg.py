"""IRG as a distiller: a step's objective recomputed from the NumPy
reference of `test_losses_irg.py` (on a teacher twice the student's width,
and on one of other widths and spatial sizes), the stages it reads, the
networks it refuses, a few steps that learn and its flags. (`test_distillers.py`
runs a step of every method too; a run on Fashion-MNIST:
`test_methods_learn.py`.)"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import nets
from tf_kd import networks, optimizers
from tf_kd.config import Config, method_flags, takes_flag, validate
from tf_kd.distillers import IRG, get_distiller
from tf_kd.distillers.base import class_loss
from tf_kd.errors import UserError
from test_losses_irg import nchw, np_irg



def batch(n=16, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randn(n, 32, 32, 3).astype("float32"), rng.randint(0, 10, n).astype("int32")


def conv_net(widths, strides=(2, 2, 2), name="net"):
    """A functional network of 3x3 convolutions + ReLU, one per stage
    (`feat{i}`), global pooling and logits (10 classes)."""
    image = keras.Input((32, 32, 3))
    x, outputs = image, {}
    for i, (width, stride) in enumerate(zip(widths, strides)):
        outputs[f"feat{i}"] = x = keras.layers.Conv2D(width, 3, stride, "same",
                                                      activation="relu")(x)
    outputs["pool"] = keras.layers.GlobalAveragePooling2D()(x)
    outputs["logits"] = keras.layers.Dense(10)(outputs["pool"])
    return keras.Model(image, outputs, name=name)


def calibrated(teacher, images, steps=8):
    """`teacher` with its batch norms' moving statistics near those of
    `images` (an untrained network's are 0 and 1, which blow its inference
    outputs up), as a trained teacher's would be."""
    for _ in range(steps):
        teacher(images, training=True)
    return teacher


TEACHERS = {
    "ResNet twice the width": lambda: nets.ResNet((32, 32, 3), 10, "Teacher", width=0.25),
    # 12 / 24 / 48 channels at 16 / 8 / 4 pixels (the student: 4 / 8 / 16... at 32 / 16 / 8)
    "other widths and sizes": lambda: conv_net((12, 24, 48), name="other"),
}


def irg_distiller(teacher_key="ResNet twice the width", **kwargs):
    tf.keras.utils.set_random_seed(0)
    student = nets.ResNet((32, 32, 3), 10, "Student", width=0.125)
    teacher = calibrated(TEACHERS[teacher_key](), batch(16, seed=5)[0])
    distiller = IRG(student, teacher, **kwargs)
    distiller.compile(optimizer=optimizers.Momentum(0.01))
    return distiller


def reference_outputs(outputs, names):
    """What `np_irg` takes, in NCHW: the two stages, pooled, logits."""
    return [nchw(outputs[n].numpy().astype("float64")) for n in names] + [
        outputs[k].numpy().astype("float64") for k in ("pool", "logits")]


@pytest.mark.parametrize("teacher", TEACHERS)
def test_a_step_trains_on_the_references_objective(teacher):
    """The first step's logged loss is `CE + IRG + decay`, IRG from the
    NumPy reference with `train_kd.py`'s weights (0.1, 5, 5)."""
    distiller = irg_distiller(teacher)
    images, labels = batch()
    s = distiller.student(images, training=True)
    t = distiller.teacher(images, training=False)
    term = np_irg(reference_outputs(s, ["feat1", "feat2"]),
                  reference_outputs(t, ["feat1", "feat2"]), (0.1, 5.0, 5.0))
    expected = float(class_loss(labels, s["logits"])) + term + float(distiller.weight_decay())
    logs = distiller.train_on_batch(images, labels, return_dict=True)
    assert logs["distillation_loss"] == pytest.approx(term, rel=1e-4)
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    assert term > 0


def test_it_reads_the_last_two_stages():
    """The reference's `rb2`, `rb3`: the last two of three stages; of the
    28x28 TF1 ResNet's five stages, the fourth and fifth (4x4x256 and
    2x2x512 at full width)."""
    student = nets.ResNet((32, 32, 3), 10, "Student", width=0.125)
    assert IRG(student, conv_net((8, 16, 32))).student_names == ["feat1", "feat2"]
    student = nets.ResNet((28, 28, 1), 10, "Student", width=0.125)
    teacher = nets.ResNet((28, 28, 1), 10, "Teacher", width=0.125)
    distiller = IRG(student, teacher)
    assert distiller.student_names == distiller.teacher_names == ["feat3", "feat4"]
    assert [tuple(student.output[n].shape[1:]) for n in distiller.student_names] == [
        (4, 4, 32), (2, 2, 64)]


def test_a_few_steps_learn():
    """Five steps on one batch: the IRG term and the whole objective fall,
    the teacher stays as it was."""
    distiller = irg_distiller()
    teacher_before = [w.copy() for w in distiller.teacher.get_weights()]
    images, labels = batch(32, seed=1)
    history = distiller.fit(images, labels, batch_size=32, epochs=5, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert history["distillation_loss"][-1] < 0.9 * history["distillation_loss"][0], history
    assert history["loss"][-1] < history["loss"][0]
    for before, after in zip(teacher_before, distiller.teacher.get_weights()):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("widths, strides, says", [
    ((4, 8, 24), (2, 2, 2), r"IRG cannot relate the student's \(bad\) feat1 and feat2: the "
                            "later feature has 24 channels and the earlier 8"),
    ((4, 8, 16), (2, 1, 2), None),     # fine: pooled 16x16 -> 8x8
    ((4, 16, 8), (2, 2, 2), "the later feature has 8 channels and the earlier 16"),
])
def test_networks_whose_stages_it_cannot_relate_are_refused(widths, strides, says):
    student = conv_net(widths, strides, name="bad")
    teacher = conv_net((8, 16, 32), name="teacher")
    if says is None:
        IRG(student, teacher)
        return
    with pytest.raises(UserError, match=says):
        IRG(student, teacher)


def test_a_network_of_one_stage_is_refused():
    student, teacher = conv_net((8,), (2,), name="one"), conv_net((8,), (2,), name="two")
    with pytest.raises(UserError, match="last two stage features of each network; the "
                                        r"student \(one\) has 1"):
        IRG(student, teacher)


# -- Flags and train.py

def test_its_flags():
    assert method_flags("IRG") == ["--irg_w_vert", "--irg_w_edge", "--irg_w_tran", "--teacher",
                                   "--teacher_precision"]
    assert takes_flag("IRG", "--irg_w_edge") and not takes_flag("KD", "--irg_w_edge")
    defaults = Config()
    assert (defaults.irg_w_vert, defaults.irg_w_edge, defaults.irg_w_tran) == (0.1, 5.0, 5.0)
    assert get_distiller("IRG") is IRG and IRG.reads == (networks.STAGES, networks.POOL)
    for flag in ("irg_w_vert", "irg_w_edge", "irg_w_tran"):
        with pytest.raises(UserError, match=f"--{flag}=-1.0: must be >= 0"):
            validate(Config(Distillation="IRG", teacher="t.keras", **{flag: -1.0}))
