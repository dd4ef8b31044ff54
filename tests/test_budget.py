"""The labelled-data budget (`--labels_per_class`, `--unlabeled`): the
class-balanced draw, the batches (labelled images first, per replica, then
unlabelled ones), and the distillers' losses on such batches."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

import dataloader
from dataloader import budget
from dataloader.dataset import Dataset
from nets import ResNet
from reference import log_softmax, softmax
from tf_kd import optimizers
from tf_kd.distillers import SoftLogits
from tf_kd.distillers.base import class_loss
from tf_kd.errors import UserError

CLASSES = 3


def constant_images(count=60):
    """Image `i` is 8x8 pixels of value `i` (augmentation moves pixels, so a
    constant image stays itself); its label is `i % 3`."""
    images = np.repeat(np.arange(count, dtype=np.uint8), 64).reshape(count, 8, 8, 1)
    return Dataset("constant", images, np.arange(count, dtype=np.int32) % CLASSES,
                   images[:6], np.arange(6, dtype=np.int32) % CLASSES, CLASSES,
                   np.array([0.0], np.float32), np.array([1.0], np.float32))


def ids(images):
    """The index of each constant image of a normalised batch (mean 0, std 1)."""
    return np.round(images.numpy()[:, 4, 4, 0]).astype(int)


def test_draw_is_class_balanced_and_decided_by_the_seed():
    labels = np.random.default_rng(0).integers(0, 5, 400)
    drawn = budget.draw(labels, 7, 5, seed=3)
    assert list(np.bincount(labels[drawn], minlength=5)) == [7] * 5
    assert list(drawn) == sorted(set(drawn))
    np.testing.assert_array_equal(drawn, budget.draw(labels, 7, 5, seed=3))
    assert budget.fingerprint(drawn) != budget.fingerprint(budget.draw(labels, 7, 5, seed=4))


def test_a_class_with_too_few_images_is_refused():
    labels = np.array([0] * 10 + [1] * 3)
    with pytest.raises(UserError, match=r"--labels_per_class=4: class 1 has only 3"):
        budget.draw(labels, 4, 2, seed=0)


def test_apply_keeps_the_rest_without_labels():
    data = constant_images()
    budgeted, record = budget.apply(data, 4, seed=0, keep_unlabeled=True)
    assert len(budgeted.train_labels) == 12 and len(budgeted.unlabeled_images) == 48
    assert budgeted.epoch_size == 60
    labelled = set(budgeted.train_images[:, 0, 0, 0])
    assert labelled.isdisjoint(budgeted.unlabeled_images[:, 0, 0, 0])
    assert labelled | set(budgeted.unlabeled_images[:, 0, 0, 0]) == set(range(60))
    np.testing.assert_array_equal(budgeted.train_labels, budgeted.train_images[:, 0, 0, 0] % 3)
    assert record == {"labels_per_class": 4, "labelled": 12, "unlabeled": 48,
                      "indices_sha256": budget.fingerprint(sorted(labelled))}
    alone, record = budget.apply(data, 4, seed=0, keep_unlabeled=False)
    assert alone.unlabeled_images is None and record["unlabeled"] == 0


@pytest.mark.parametrize("replicas", [1, 2])
def test_batches_put_each_replicas_labelled_images_first(replicas):
    budgeted, _ = budget.apply(constant_images(), 4, seed=0, keep_unlabeled=True)
    labelled = set(budgeted.train_images[:, 0, 0, 0])
    steps = dataloader.steps_per_epoch(budgeted, 8)
    assert steps == 60 // 8
    batches = list(itertools.islice(
        dataloader.train_pipeline(budgeted, 8, seed=1, replicas=replicas), 2 * steps))
    for images, labels in batches:
        assert images.shape == (16, 8, 8, 1) and labels.shape == (8,)
        per_replica = ids(images).reshape(replicas, 2, 8 // replicas)
        first = per_replica[:, 0].ravel()
        assert set(first) <= labelled and labelled.isdisjoint(per_replica[:, 1].ravel())
        np.testing.assert_array_equal(labels.numpy(), first % 3)
    seen = np.concatenate([ids(images)[:8] if replicas == 1 else ids(images)
                           for images, _ in batches[:steps]])
    assert labelled <= set(seen)       # an epoch cycles through every labelled image
    resumed = next(iter(dataloader.train_pipeline(budgeted, 8, seed=1, first_epoch=1,
                                                  replicas=replicas)))
    np.testing.assert_array_equal(resumed[0].numpy(), batches[steps][0].numpy())


@pytest.mark.parametrize("replicas", [1, 2])
def test_indices_place_the_unlabelled_images_after_the_labelled(replicas):
    """`indices=True` (CRD's memory banks): the same batches, with each
    image's place among the labelled images, then the unlabelled ones, the
    places `Dataset.example_labels` labels (-1 without a label)."""
    budgeted, _ = budget.apply(constant_images(), 4, seed=0, keep_unlabeled=True)
    image_of_place = np.concatenate([budgeted.train_images[:, 0, 0, 0],
                                     budgeted.unlabeled_images[:, 0, 0, 0]])
    example_labels = budgeted.example_labels
    assert list(example_labels[:12]) == list(budgeted.train_labels)
    assert list(example_labels[12:]) == [-1] * 48
    plain = dataloader.train_pipeline(budgeted, 8, seed=1, replicas=replicas)
    indexed = dataloader.train_pipeline(budgeted, 8, seed=1, replicas=replicas, indices=True)
    for (images, labels), ((same, places), same_labels) in itertools.islice(
            zip(plain, indexed), 8):
        np.testing.assert_array_equal(same.numpy(), images.numpy())
        np.testing.assert_array_equal(same_labels.numpy(), labels.numpy())
        np.testing.assert_array_equal(image_of_place[places.numpy()], ids(images))
        per_replica = example_labels[places.numpy()].reshape(replicas, 2, 8 // replicas)
        np.testing.assert_array_equal(per_replica[:, 0].ravel(), labels.numpy())
        assert np.all(per_replica[:, 1] == -1)


def test_without_unlabeled_images_a_batch_is_labelled_images_only():
    budgeted, _ = budget.apply(constant_images(), 4, seed=0, keep_unlabeled=False)
    images, labels = next(iter(dataloader.train_pipeline(budgeted, 8, seed=1)))
    assert images.shape == (8, 8, 8, 1)
    np.testing.assert_array_equal(labels.numpy(), ids(images) % 3)


def test_class_loss_reads_the_labelled_rows_only():
    rng = np.random.RandomState(0)
    logits = rng.randn(10, 4).astype("float32")
    labels = rng.randint(0, 4, 6)
    expected = -log_softmax(logits[:6].astype("float64"))[np.arange(6), labels].mean()
    assert float(class_loss(labels, tf.constant(logits))) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("t_squared", [False, True])
def test_distillation_term_covers_the_unlabelled_images(t_squared):
    """Soft_logits on a budget batch: `0.7 CE` on the labelled rows, `0.3
    KL(T=4)` (times T^2 = 16 with `t_squared`) on all of them."""
    tf.keras.utils.set_random_seed(0)
    student = ResNet((32, 32, 3), 10, "Student", width=0.125)
    teacher = ResNet((32, 32, 3), 10, "Teacher", width=0.125)
    rng = np.random.RandomState(1)
    images = rng.randn(12, 32, 32, 3).astype("float32")
    labels = rng.randint(0, 10, 6).astype("int32")
    copy = ResNet((32, 32, 3), 10, "Student", width=0.125)
    copy.set_weights(student.get_weights())
    s = copy(images, training=True)["logits"].numpy().astype("float64")
    t = teacher(images, training=False)["logits"].numpy().astype("float64")
    ce = -log_softmax(s[:6])[np.arange(6), labels].mean()
    kl = (softmax(t / 4) * (log_softmax(t / 4) - log_softmax(s / 4))).sum(1).mean()
    decay = float(tf.add_n(copy.losses))
    distiller = SoftLogits(student, teacher, t_squared=t_squared)
    distiller.compile(optimizer=optimizers.Momentum(0.1))
    got = distiller.train_on_batch(images, labels, return_dict=True)
    scale = 16 if t_squared else 1
    assert got["loss"] == pytest.approx(0.7 * ce + 0.3 * scale * kl + decay, rel=1e-5)
    assert got["distillation_loss"] == pytest.approx(kl, rel=1e-5)
