"""Every method: one compiled train_step on tiny networks, which variables it
changes, the phase switch at init_epoch, and the gradient clipping bound."""

import numpy as np
import pytest
import tensorflow as tf

from nets import ResNet
from tf_kd import optimizers
from tf_kd.distillers import DISTILLERS, get_distiller
from tf_kd.distillers.base import class_loss, sigmoid

INIT_METHODS = {"FitNet", "FSP", "AB", "FT", "MHGD", "KA"}


def make(key, init_epoch=None, seed=0):
    tf.keras.utils.set_random_seed(seed)
    student = ResNet((32, 32, 3), 10, "Student", width=0.125)
    method = get_distiller(key)
    kwargs = {} if init_epoch is None else {"init_epoch": init_epoch}
    if method.needs_teacher:
        kwargs["teacher"] = ResNet((32, 32, 3), 10, "Teacher", width=0.125)
    if method.example_indices:       # CRD: a training split of 32, few negatives
        kwargs.update(train_labels=np.arange(32) % 10, nce_k=64)
    distiller = method(student, **kwargs)
    distiller.compile(optimizer=optimizers.Momentum(0.1))
    return distiller


def batch(seed=0, n=16):
    rng = np.random.RandomState(seed)
    return (rng.randn(n, 32, 32, 3).astype("float32"),
            rng.randint(0, 10, n).astype("int32"))


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def changed(variables, before):
    return {v.path for v, b in zip(variables, before) if not np.array_equal(v.numpy(), b)}


def paths(variables):
    return {v.path for v in variables}


def module_variables(distiller):
    """Trainable variables of the method's own parts."""
    own = paths(distiller.student.trainable_variables)
    if distiller.teacher is not None:
        own |= paths(distiller.teacher.variables)
    return {v.path for v in distiller.trainable_variables} - own


def test_keys_are_the_tf1_ones_then_the_added_methods():
    assert list(DISTILLERS)[:13] == ["None", "Soft_logits", "DML", "FT", "FitNet", "AT", "AB",
                                     "VID", "FSP", "KD-SVD", "KD-EID", "RKD", "MHGD"]
    assert list(DISTILLERS)[13:] == ["NST", "KA", "DFKD", "KD", "DKD", "DIST", "PKT", "SP",
                                     "CC", "CRD", "ReviewKD", "IRG"]
    with pytest.raises(ValueError, match="Soft_logits.*MHGD"):
        get_distiller("Hinton")


@pytest.mark.parametrize("key", sorted(DISTILLERS))
def test_default_init_epoch(key):
    expected = 1 if key == "KA" else 40 if key in INIT_METHODS else 0   # KA: the paper's 1
    assert get_distiller(key).default_init_epoch == expected


def run_step(distiller, epoch, seed=0):
    distiller.on_epoch_begin(epoch)
    images, labels = batch(seed)
    if distiller.example_indices:    # the images' places in the training split
        images = (images, np.arange(16, dtype="int32") + 16 * (seed % 2))
    logs = distiller.train_on_batch(images, labels, return_dict=True)
    assert np.isfinite(logs["loss"]), logs
    return logs


# What one step of the main phase trains, per method.
MAIN_PHASE = {
    "None": "student", "Soft_logits": "student", "AT": "student", "RKD": "student",
    "KD-SVD": "student", "KD-EID": "student", "MHGD": "student",
    "FitNet": "student", "FSP": "student",
    "AB": "student+decay",   # TF1: the connectors only feel weight decay now
    "VID": "student+modules", "NST": "student", "FT": "student+translator", "DML": "student+teacher",
    "KA": "student+adapter", "DFKD": "student",
    "KD": "student", "DKD": "student", "DIST": "student", "PKT": "student", "SP": "student",
    "CC": "student+modules",   # both embeddings train, as RepDistiller's embed_s, embed_t
    "CRD": "student+modules",  # both embeddings (the memory banks are not trainable)
    "ReviewKD": "student+modules",   # the ABFs
    "IRG": "student",
}
# The epoch of the main phase's step: ReviewKD's warm-up weighs epoch 0 by 0.
MAIN_PHASE_EPOCH = {"ReviewKD": 1}


def trained_by(distiller, step):
    """Paths of the trainable variables `step()` changes."""
    before = {v.path: v.numpy().copy() for v in distiller.trainable_variables}
    result = step()
    return result, {v.path for v in distiller.trainable_variables
                    if not np.array_equal(v.numpy(), before[v.path])}


@pytest.mark.parametrize("key", sorted(DISTILLERS))
def test_main_phase_step_trains_the_right_variables(key):
    distiller = make(key, init_epoch=1 if key in INIT_METHODS else None)
    teacher_before = snapshot(distiller.teacher.variables) if distiller.teacher else []
    epoch = distiller.init_epoch + MAIN_PHASE_EPOCH.get(key, 0)
    first, trained = trained_by(distiller, lambda: run_step(distiller, epoch, seed=0))
    student = paths(distiller.student.trainable_variables)
    modules = module_variables(distiller)
    expected = MAIN_PHASE[key]
    assert student <= trained, student - trained
    if expected == "student+teacher":
        assert paths(distiller.teacher.trainable_variables) <= trained
    elif distiller.teacher is not None:
        assert not changed(distiller.teacher.variables, teacher_before)
    if expected == "student+modules":
        assert modules and modules <= trained
    elif expected == "student+decay":
        pass
    elif expected == "student+translator":
        assert {p for p in modules if "translator" in p} <= trained
        assert not {p for p in trained if "paraphraser" in p}
    elif expected == "student+adapter":
        assert {p for p in modules if "adapter" in p} <= trained
        assert not {p for p in trained if "auto_encoder" in p}
    else:
        assert not (trained & modules), trained & modules
    second = run_step(distiller, epoch, seed=1)
    assert first["loss"] != second["loss"]
    if key not in {"None", "FitNet", "FSP", "AB"}:   # those use CE alone now
        assert np.isfinite(second["distillation_loss"]) and second["distillation_loss"] != 0


@pytest.mark.parametrize("key", sorted(INIT_METHODS))
def test_initialisation_phase_and_switch(key):
    distiller = make(key, init_epoch=2)
    assert distiller.initializing
    teacher_before = snapshot(distiller.teacher.variables)
    _, trained = trained_by(distiller, lambda: run_step(distiller, 0))
    student = paths(distiller.student.trainable_variables)
    modules = module_variables(distiller)
    assert not changed(distiller.teacher.variables, teacher_before)
    if key in {"FT", "MHGD", "KA"}:  # only the paraphraser / attention network / auto-encoder
        assert trained and not (trained & student)
        assert trained <= modules
        if key == "FT":
            assert all("paraphraser" in p for p in trained)
    else:                            # student by distillation, not its classifier
        assert trained & student
        assert not {p for p in trained if "full" in p}
        assert modules <= trained    # AB connectors, FitNet maps if any
    run_step(distiller, 1)
    assert distiller.initializing
    run_step(distiller, 2)           # epoch == init_epoch: main phase
    assert not distiller.initializing


@pytest.mark.parametrize("key", ["KD-SVD", "KD-EID", "MHGD"])
def test_distillation_gradient_is_clipped_to_class_gradient(key, monkeypatch):
    distiller = make(key, init_epoch=0)
    distiller.on_epoch_begin(0)                  # sigmoid(0) = 0.5
    images, labels = batch(3)
    recorded = {}
    apply = distiller.optimizer.apply

    def record(gradients, variables):
        recorded["g"] = {v.path: g.numpy() for g, v in zip(gradients, variables)}
        return apply(gradients, variables)

    monkeypatch.setattr(distiller.optimizer, "apply", record)
    variables = distiller.student.trainable_variables
    state = snapshot(distiller.variables)
    with tf.GradientTape(persistent=True) as tape:
        out = distiller.student(images, training=True)
        ce = class_loss(labels, out["logits"])
        decay = distiller.weight_decay()
    g_ce = tape.gradient(ce, variables)
    g_decay = tape.gradient(decay, variables)
    for v, s in zip(distiller.variables, state):   # undo BN statistics updates
        v.assign(s)
    distiller.run_eagerly = True
    distiller.train_on_batch(images, labels)
    factor = float(sigmoid(0))
    assert factor == pytest.approx(0.5)
    clipped = 0
    for v, gc, gw in zip(variables, g_ce, g_decay):
        rest = recorded["g"][v.path] - gc.numpy() - gw.numpy()
        bound = np.linalg.norm(gc.numpy()) * factor
        assert np.linalg.norm(rest) <= bound * (1 + 1e-3) + 1e-7, v.path
        clipped += np.linalg.norm(rest) > 0.999 * bound
    if key != "MHGD":        # the KD-SVD bound is active somewhere at this scale
        assert clipped > 0


def test_kd_plus_nst_adds_the_soft_logits_term():
    tf.keras.utils.set_random_seed(0)
    student = ResNet((32, 32, 3), 10, "Student", width=0.125)
    teacher = ResNet((32, 32, 3), 10, "Teacher", width=0.125)
    images, _ = batch()
    s, t = student(images), teacher(images)
    from tf_kd.distillers import NST
    from tf_kd.losses import response, selectivity
    plain = NST(student, teacher, kernel="linear")
    combined = NST(student, teacher, kernel="linear", with_kd=True)
    nst = 25.0 * selectivity.nst([s[f"feat{i}"] for i in range(3)],
                                 [t[f"feat{i}"] for i in range(3)], "linear")
    assert float(plain.distillation_loss(s, t)) == pytest.approx(float(nst), rel=1e-5)
    kd = 0.3 * response.soft_logits(s["logits"], t["logits"], 4.0)
    assert float(combined.distillation_loss(s, t)) == pytest.approx(float(nst + kd), rel=1e-5)
    with pytest.raises(ValueError, match="gaussian"):
        NST(student, teacher, kernel="rbf")
