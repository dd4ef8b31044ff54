"""Segmentation: the Fashion-MNIST label maps, joint augmentation, the FCN pair,
pixel accuracy / mIoU, and KA's two stages and runs through training.train."""

import os

import numpy as np
import pytest
import scipy.io as sio
import tensorflow as tf

import dataloader
from dataloader import fashion_mnist, preprocessing
from dataloader.dataset import Dataset
from nets import FCN, feature_names
from tf_kd import evaluation, optimizers, training
from tf_kd.distillers import Baseline, KnowledgeAdaptation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION),
                                   reason="needs Debian's dataset-fashion-mnist")


@needs_fashion
def test_label_maps_of_real_images():
    (images, labels), _ = fashion_mnist.load()
    data = dataloader.load("fashion_mnist_seg", train_subset=5, test_subset=1)
    assert data.num_classes == 11 and data.segmentation
    np.testing.assert_array_equal(data.train_images, images[:5])
    for image, label, label_map in zip(images[:5], labels[:5], data.train_labels):
        assert label_map.shape == (32, 32) and label_map.dtype == np.int32
        for row in range(32):
            for col in range(32):
                value = int(image[row, col, 0])
                assert label_map[row, col] == (label if value >= 10 else 10)
        assert np.all(label_map[:2] == 10) and np.all(label_map[:, -2:] == 10)   # padding
        assert {label, 10} == set(np.unique(label_map))
    faint = (images[:5, ..., 0] > 0) & (images[:5, ..., 0] < 10)
    assert faint.any()                 # the threshold matters on these images
    assert np.all(data.train_labels[faint] == 10)


def test_augmentation_moves_labels_with_their_pixels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 12, 12, 1), dtype=np.uint8)
    maps = (images[..., 0] % 11).astype(np.int32)   # a label each pixel carries along
    mean, std = preprocessing.channel_stats(images)
    data = Dataset("tiny_seg", images, maps, images, maps, 11, mean, std)
    moved = 0
    for epoch in range(3):
        for batch, labels in dataloader.train_pipeline(data, 4, seed=1,
                                                       first_epoch=epoch).take(2):
            pixels = np.rint(batch.numpy()[..., 0] * std[0] + mean[0]).astype(np.int64)
            np.testing.assert_array_equal(labels.numpy(), pixels % 11)
            moved += not any(np.array_equal(p, q) for p in pixels for q in images[..., 0])
    assert moved                       # images were flipped / shifted


def test_fcn_output_shapes():
    x = np.zeros((2, 32, 32, 1), "float32")
    student = FCN((32, 32, 1), 11, "Student", width=0.25)
    teacher = FCN((32, 32, 1), 11, "Teacher", width=0.25)
    shapes = {name: {k: tuple(v.shape) for k, v in net(x).items()}
              for name, net in [("s", student), ("t", teacher)]}
    assert shapes["s"] == {
        "feat0": (2, 32, 32, 8), "feat_noact0": (2, 32, 32, 8),         # half width
        "feat1": (2, 16, 16, 16), "feat_noact1": (2, 16, 16, 16),
        "feat2": (2, 8, 8, 32), "feat_noact2": (2, 8, 8, 32),
        "pool": (2, 32), "logits": (2, 32, 32, 11)}
    assert shapes["t"] == {
        "feat0": (2, 32, 32, 16), "feat_noact0": (2, 32, 32, 16),
        "feat1": (2, 16, 16, 32), "feat_noact1": (2, 16, 16, 32),
        "feat2": (2, 16, 16, 64), "feat_noact2": (2, 16, 16, 64),   # dilated, not strided
        "pool": (2, 64), "logits": (2, 32, 32, 11)}
    assert feature_names(teacher) == ["feat0", "feat1", "feat2"]
    assert teacher.get_layer("Resblock2_BasicBlock0_conv0").dilation_rate == (2, 2)
    assert student.get_layer("Resblock2_BasicBlock0_conv0").strides == (2, 2)


def np_scores(labels, predictions, num_classes):
    """Pixel accuracy and the mean over classes present of TP / (TP + FP + FN)."""
    ious = []
    for c in range(num_classes):
        union = np.sum((labels == c) | (predictions == c))
        if union:
            ious.append(np.sum((labels == c) & (predictions == c)) / union)
    return np.mean(labels == predictions), np.mean(ious)


def test_pixel_accuracy_and_miou_against_numpy(tmp_path):
    tf.keras.utils.set_random_seed(0)
    student = FCN((32, 32, 1), 11, "Student", width=0.25)
    distiller = Baseline(student)
    distiller.compile(optimizer=optimizers.Momentum(0.1))
    rng = np.random.RandomState(0)
    images = rng.randn(20, 32, 32, 1).astype("float32")
    labels = rng.randint(0, 11, (20, 32, 32)).astype("int32")
    predictions = np.argmax(student(images)["logits"].numpy(), -1)
    accuracy, miou = np_scores(labels, predictions, 11)
    assert 0 < miou < accuracy < 1
    logs = distiller.evaluate(images, labels, batch_size=8, return_dict=True, verbose=0)
    assert logs["accuracy"] == pytest.approx(accuracy, rel=1e-5)
    assert logs["miou"] == pytest.approx(miou, rel=1e-5)
    confusion = np.bincount((labels * 11 + predictions).ravel(), minlength=121).reshape(11, 11)
    assert evaluation.accuracy(confusion) == pytest.approx(100 * accuracy)
    assert evaluation.mean_iou(confusion) == pytest.approx(100 * miou)


def test_classification_keeps_its_metrics():
    from nets import ResNet
    distiller = Baseline(ResNet((32, 32, 3), 10, "Student", width=0.125))
    assert [m.name for m in distiller.metrics] == ["loss", "accuracy"]   # no distillation term


def ids(variables):
    """Variables by identity (the student's and the teacher's layer names,
    hence variable paths, coincide)."""
    return {id(v) for v in variables}


def trained_by_one_step(distiller, epoch, images, labels):
    distiller.on_epoch_begin(epoch)
    before = [(v, v.numpy().copy()) for v in distiller.variables]
    logs = distiller.train_on_batch(images, labels, return_dict=True)
    assert np.isfinite(logs["loss"]) and np.isfinite(logs["miou"])
    return {id(v) for v, value in before if not np.array_equal(v.numpy(), value)}


def test_ka_stages_train_the_right_variables():
    tf.keras.utils.set_random_seed(0)
    student = FCN((32, 32, 1), 11, "Student", width=0.125)
    teacher = FCN((32, 32, 1), 11, "Teacher", width=0.125)
    distiller = KnowledgeAdaptation(student, teacher, init_epoch=1)
    distiller.compile(optimizer=optimizers.Momentum(0.1))
    rng = np.random.RandomState(0)
    images = rng.randn(8, 32, 32, 1).astype("float32")
    labels = rng.randint(0, 11, (8, 32, 32)).astype("int32")
    auto_encoder = ids(distiller.auto_encoder.trainable_variables)
    adapter = ids(distiller.adapter.trainable_variables)
    network = ids(student.trainable_variables)
    frozen_teacher = ids(teacher.variables)
    assert distiller.auto_encoder.encode(teacher(images)["feat2"]).shape == (8, 2, 2, 32)

    first = trained_by_one_step(distiller, 0, images, labels)
    assert distiller.initializing and first == auto_encoder        # and nothing else

    second = trained_by_one_step(distiller, 1, images, labels)
    assert not distiller.initializing
    assert network | adapter <= second
    assert not second & (auto_encoder | frozen_teacher)


@pytest.fixture(scope="module")
def segmentation_teacher(tmp_path_factory):
    if not os.path.isdir(FASHION):
        pytest.skip("needs Debian's dataset-fashion-mnist")
    train_dir = str(tmp_path_factory.mktemp("fcn") / "teacher")
    training.train(tiny(train_dir, main_scope="Teacher"))
    return train_dir


def tiny(train_dir, **overrides):
    settings = dict(train_dir=str(train_dir), dataset="fashion_mnist_seg", model_name="FCN",
                    train_epoch=1, batch_size=32, val_batch_size=100, width=0.125,
                    train_subset=256, test_subset=200, verbose=0, exports="")
    settings.update(overrides)
    return training.Config(**settings)


@pytest.mark.parametrize("key", ["None", "KA"])
def test_segmentation_runs_through_train(key, segmentation_teacher, tmp_path):
    config = tiny(tmp_path / key, Distillation=key, init_epoch=1 if key == "KA" else -1,
                  teacher=os.path.join(segmentation_teacher, "model.keras") if key == "KA" else "")
    history = training.train(config).history
    epochs = 2 if key == "KA" else 1
    assert len(history["val_miou"]) == epochs and np.all(np.isfinite(history["loss"]))
    log = sio.loadmat(os.path.join(config.train_dir, "log.mat"))
    np.testing.assert_allclose(np.ravel(log["validation_miou"]),
                               100 * np.array(history["val_miou"]))
    saved = sio.loadmat(os.path.join(config.train_dir, "train_params.mat"))
    assert "Student/full/biases" in saved and not any(k.startswith("Teacher/") for k in saved)
    data = dataloader.load("fashion_mnist_seg", test_subset=200)
    path = os.path.join(config.train_dir, "model.keras")
    confusion = evaluation.confusion_matrix(evaluation.load_logits_fn(path, data, None),
                                            data, 100)
    assert confusion.sum() == 200 * 32 * 32
    assert evaluation.accuracy(confusion) == pytest.approx(
        np.ravel(log["validation_acc"])[-1], abs=0.01)
    assert evaluation.mean_iou(confusion) == pytest.approx(
        np.ravel(log["validation_miou"])[-1], abs=0.01)


def test_classification_network_on_segmentation_set_is_an_error(tmp_path):
    if not os.path.isdir(FASHION):
        pytest.skip("needs Debian's dataset-fashion-mnist")
    with pytest.raises(ValueError, match="FCN"):
        training.train(tiny(tmp_path / "bad", model_name="ResNet"))
