"""CRD and ReviewKD as distillers: each step's objective recomputed from the
reference's formulas (CRD's memory banks before the step, ReviewKD's ABFs on
a teacher of other widths and spatial sizes), CRD's negatives and its
example indices through the training pipeline (budgets included),
ReviewKD's warm-up under a plain `fit`, the flags, and a short `train.py`
run of each. (`test_distillers.py` runs a step of every method too.)"""


import keras
import numpy as np
import pytest
import tensorflow as tf

import dataloader
import nets
from dataloader import budget
from tf_kd import optimizers
from tf_kd.config import Config, validate
from tf_kd.distillers import CRD, ReviewKD
from tf_kd.distillers.base import class_loss
from tf_kd.errors import UserError
from tf_kd.losses import multiple
from test_losses_crd_reviewkd import abf_parameters, np_contrast_loss, np_scores, np_update

TRAIN_LABELS = np.arange(64) % 10


def batch(n=16, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randn(n, 32, 32, 3).astype("float32"), rng.randint(0, 10, n).astype("int32")


def networks(teacher=None):
    tf.keras.utils.set_random_seed(0)
    student = nets.ResNet((32, 32, 3), 10, "Student", width=0.125)
    return student, teacher or nets.ResNet((32, 32, 3), 10, "Teacher", width=0.25)


def compiled(distiller):
    distiller.compile(optimizer=optimizers.Momentum(0.01))
    return distiller


def crd(nce_k=32):
    return compiled(CRD(*networks(), train_labels=TRAIN_LABELS, nce_k=nce_k))


def other_sizes_teacher():
    """A functional teacher of widths 12, 24, 48 at 16, 8, 4 pixels (the
    student: 4 / 8 / 16 channels at 32, 16, 8)."""
    image = keras.Input((32, 32, 3))
    x, outputs = image, {}
    for i, width in enumerate((12, 24, 48)):
        outputs[f"feat_noact{i}"] = pre = keras.layers.Conv2D(width, 3, 2, "same")(x)
        outputs[f"feat{i}"] = x = keras.layers.ReLU()(pre)
    outputs["pool"] = keras.layers.GlobalAveragePooling2D()(x)
    outputs["logits"] = keras.layers.Dense(10)(outputs["pool"])
    return keras.Model(image, outputs, name="teacher")


# -- CRD

def test_crd_step_trains_on_the_references_objective():
    """`CE + 0.8 CRD + decay` from the banks before the step, the step's
    contrast set and the embeddings; afterwards the batch's entries (only)
    moved by the momentum rule and both Z set from this batch."""
    distiller = crd()
    images, _ = batch()
    indices = np.arange(16, 32, dtype="int32")
    labels = TRAIN_LABELS[indices].astype("int32")
    contrast = distiller.contrast_indices(tf.constant(indices, tf.int64)).numpy()
    bank_s = distiller.contrast.memory_s.numpy()
    bank_t = distiller.contrast.memory_t.numpy()
    s = distiller.student(images, training=True)
    t = distiller.teacher(images, training=False)
    v_s = distiller.student_embed(s["pool"]).numpy().astype(np.float64)
    v_t = distiller.teacher_embed(t["pool"]).numpy().astype(np.float64)
    out_s, z_s = np_scores(bank_t, v_s, contrast, 0.07)
    out_t, z_t = np_scores(bank_s, v_t, contrast, 0.07)
    term = 0.8 * (np_contrast_loss(out_s, 64) + np_contrast_loss(out_t, 64))
    expected = float(class_loss(labels, s["logits"])) + term + float(distiller.weight_decay())
    logs = distiller.train_on_batch((images, indices), labels, return_dict=True)
    assert logs["distillation_loss"] == pytest.approx(term, rel=1e-4)
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    np.testing.assert_allclose([float(distiller.contrast.z_s), float(distiller.contrast.z_t)],
                               [z_s, z_t], rtol=1e-4)
    np.testing.assert_allclose(distiller.contrast.memory_s.numpy(),
                               np_update(bank_s, v_s, indices, 0.5), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(distiller.contrast.memory_t.numpy(),
                               np_update(bank_t, v_t, indices, 0.5), rtol=1e-4, atol=1e-6)


def test_crd_draws_each_images_negatives_from_the_other_classes():
    """The contrast set is the image's own index, then `nce_k` images of
    other classes, uniformly (every one of them drawn, about equally often),
    the same for the same step and other at the next."""
    distiller = crd(nce_k=6000)
    indices = tf.constant([3, 10, 47], tf.int64)
    contrast = distiller.contrast_indices(indices).numpy()
    assert contrast.shape == (3, 6001)
    np.testing.assert_array_equal(contrast[:, 0], indices)
    for row in contrast:
        own = TRAIN_LABELS[row[0]]
        assert not np.any(TRAIN_LABELS[row[1:]] == own)
        counts = np.bincount(row[1:], minlength=64)[TRAIN_LABELS != own]
        expected = 6000 / 57
        assert counts.min() > 0.6 * expected and counts.max() < 1.4 * expected
        assert np.sum((counts - expected) ** 2 / expected) < 100    # chi2(56): p < 4e-4
    np.testing.assert_array_equal(distiller.contrast_indices(indices).numpy(), contrast)
    distiller.optimizer.iterations.assign(1)
    assert not np.array_equal(distiller.contrast_indices(indices).numpy(), contrast)


def test_crd_embeds_each_width_and_refuses_one_class():
    distiller = crd()
    assert distiller.student_embed.linear.kernel.shape == (32, 128)   # ResNet8 at 0.125
    assert distiller.teacher_embed.linear.kernel.shape == (64, 128)   # the teacher at 0.25
    assert distiller.contrast.memory_s.shape == (64, 128)
    with pytest.raises(UserError, match="all of one class"):
        CRD(*networks(), train_labels=np.zeros(8))


@pytest.mark.parametrize("per_class", [0, 2])
def test_the_pipeline_carries_the_example_indices(per_class):
    """`((images, indices), labels)`: the labels are those of the indexed
    training images, also under a budget without unlabelled images (with
    them: tests/test_budget.py)."""
    data = dataloader.load("fashion_mnist", train_subset=256, test_subset=10)
    if per_class:
        data, _ = budget.apply(data, per_class, seed=0, keep_unlabeled=False)
    (images, indices), labels = next(iter(dataloader.train_pipeline(data, 16, seed=0,
                                                                     indices=True)))
    assert images.shape == (16, 32, 32, 1)
    np.testing.assert_array_equal(labels.numpy(), data.train_labels[indices.numpy()])


def test_with_unlabelled_images_crd_draws_negatives_from_every_image():
    """Unlabelled images (label -1) have no class: every image's negatives
    are drawn uniformly from all the training images (the reference's
    memory draw without contrast indices), the banks holding one entry per
    image, labelled or not; a step on a budget batch (8 labelled, then 8
    unlabelled images) moves the entries of all 16."""
    labels = np.concatenate([TRAIN_LABELS[:20], np.full(44, -1)])
    distiller = compiled(CRD(*networks(), train_labels=labels, nce_k=6400))
    assert distiller.by_instance and distiller.contrast.memory_s.shape == (64, 128)
    indices = tf.constant([3, 10, 47], tf.int64)
    contrast = distiller.contrast_indices(indices).numpy()
    np.testing.assert_array_equal(contrast[:, 0], indices)
    for row in contrast:
        counts = np.bincount(row[1:], minlength=64)
        assert counts.min() > 0.6 * 100 and counts.max() < 1.4 * 100
        assert np.sum((counts - 100) ** 2 / 100) < 110   # chi2(63): p < 4e-4
    images, _ = batch(16)
    places = np.array([0, 1, 2, 3, 4, 5, 6, 7, 20, 30, 31, 40, 50, 60, 62, 63], "int32")
    banks = distiller.contrast.memory_s.numpy()
    logs = distiller.train_on_batch((images, places), TRAIN_LABELS[:8].astype("int32"),
                                    return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["distillation_loss"] > 0
    moved = np.any(distiller.contrast.memory_s.numpy() != banks, axis=1)
    np.testing.assert_array_equal(np.flatnonzero(moved), places)


# -- ReviewKD

def test_reviewkd_step_on_a_teacher_of_other_widths_and_sizes():
    """`CE + min(epoch / 20, 1) weight HCL + decay`, HCL between the review
    of the student's `feat{i}` and pool and the teacher's `feat_noact{i}`
    and pool, every level resized and widened to the teacher's."""
    distiller = compiled(ReviewKD(*networks(other_sizes_teacher()), weight=5.0))
    assert distiller.out_sizes == [(16, 16), (8, 8), (4, 4), (1, 1)]
    assert [abf.out_channels for abf in distiller.abfs] == [12, 24, 48, 48]
    assert [abf.mid_channels for abf in distiller.abfs] == [32] * 4   # min(512, student's pool)
    images, labels = batch()
    s = distiller.student(images, training=True)
    t = distiller.teacher(images, training=False)
    reviewed = multiple.review([s["feat0"], s["feat1"], s["feat2"], s["pool"]],
                               distiller.abfs, distiller.out_sizes, training=True)
    assert [tuple(r.shape[1:]) for r in reviewed] == [(16, 16, 12), (8, 8, 24), (4, 4, 48),
                                                      (1, 1, 48)]
    teacher_feats = [t["feat_noact0"], t["feat_noact1"], t["feat_noact2"],
                     t["pool"][:, None, None, :]]
    term = 10 / 20 * 5.0 * float(multiple.hcl(reviewed, teacher_feats))
    expected = float(class_loss(labels, s["logits"])) + term + float(distiller.weight_decay())
    distiller.on_epoch_begin(10)
    logs = distiller.train_on_batch(images, labels, return_dict=True)
    assert logs["distillation_loss"] == pytest.approx(term, rel=1e-4)
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("teacher, student, in_channels, out_channels", [
    ("resnet32x4", "resnet8x4", [64, 128, 256, 256], [64, 128, 256, 256]),
    ("wrn_40_2", "wrn_16_2", [32, 64, 128, 128], [32, 64, 128, 128]),
    ("resnet56", "resnet20", [16, 32, 64, 64], [16, 32, 64, 64]),
])
def test_reviewkd_on_the_published_pairs_has_the_references_abfs(teacher, student, in_channels,
                                                                 out_channels):
    """`build_review_kd`'s channels for these students (mid `min(512,
    in_channels[-1])`), and as many parameters."""
    distiller = ReviewKD(nets.get_network(student)(scope="Student"),
                         nets.get_network(teacher)(scope="Teacher"))
    mid = min(512, in_channels[-1])
    assert [(abf.mid_channels, abf.out_channels) for abf in distiller.abfs] == [
        (mid, c) for c in out_channels]
    assert distiller.out_sizes == [(32, 32), (16, 16), (8, 8), (1, 1)]
    assert sum(int(np.prod(w.shape)) for abf in distiller.abfs for w in abf.trainable_weights) == (
        sum(abf_parameters(i, mid, o, fuse=k < 3)
            for k, (i, o) in enumerate(zip(in_channels, out_channels))))


def test_reviewkd_warms_up_from_epoch_zero_under_a_plain_fit():
    """`train.py`'s `min(1, epoch / warm_up)`, epochs from 0: the first
    epoch trains on CE alone."""
    distiller = compiled(ReviewKD(*networks(), warmup=3))
    factors = []

    class Record(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            factors.append(float(self.model.warmup_factor()))

    images, labels = batch(32)
    history = distiller.fit(images, labels, batch_size=16, epochs=5, verbose=0,
                            callbacks=[Record()])
    np.testing.assert_allclose(factors, [0, 1 / 3, 2 / 3, 1, 1], rtol=1e-6)
    assert history.history["distillation_loss"][0] == 0
    assert history.history["distillation_loss"][1] > 0


def test_reviewkd_needs_the_teachers_preactivation_features():
    image = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, 2, "same")(image)
    pool = keras.layers.GlobalAveragePooling2D()(x)
    teacher = keras.Model(image, {"feat0": x, "feat1": x, "feat2": x, "pool": pool,
                                  "logits": keras.layers.Dense(10)(pool)})
    with pytest.raises(ValueError, match="feat_noact0"):
        ReviewKD(*networks(teacher))


# -- Flags and train.py

@pytest.mark.parametrize("flags, says", [
    (dict(Distillation="CRD", crd_nce_k=0), "--crd_nce_k=0: must be at least 1"),
    (dict(Distillation="CRD", crd_nce_m=1.0), r"--crd_nce_m=1.0: must be in \[0, 1\)"),
    (dict(Distillation="CRD", crd_nce_t=0.0), "--crd_nce_t=0.0: must be a positive number"),
    (dict(Distillation="ReviewKD", reviewkd_warmup=0), "--reviewkd_warmup=0: must be at least 1"),
    (dict(Distillation="ReviewKD", reviewkd_weight=-1.0), "--reviewkd_weight=-1.0: must be >= 0"),
])
def test_bad_flags_are_refused(flags, says):
    with pytest.raises(UserError, match=says):
        validate(Config(teacher="t.keras", **flags))
