"""DFKD (Wang, AAAI 2021): the synthesis on a tiny teacher, the saved transfer
set, the distiller's step, the test-only data and a run through
`training.train` that never reads the training split."""

import json
import os

import numpy as np
import pytest
import scipy.io as sio
import tensorflow as tf

import dataloader
from dataloader import fashion_mnist, preprocessing, synthetic
from nets import ResNet
from reference import log_softmax, softmax
from tf_kd import optimizers, training, transfer_set
from tf_kd.distillers import DataFreeKD
from tf_kd.losses import data_free

MEAN, STD = np.array([60.0], np.float32), np.array([80.0], np.float32)


@pytest.fixture(scope="module")
def teacher():
    tf.keras.utils.set_random_seed(0)
    return ResNet((32, 32, 1), 10, "Teacher", width=0.125)


def targets_for(teacher, count, synthesis, seed=0):
    correlation = data_free.correlation_matrix(teacher.get_layer("full").kernel)
    return data_free.soft_targets(
        data_free.sample_logits(correlation, synthesis.sigma, count, [seed, 0]), synthesis.tau)


# The synthesis

def test_one_synthesis_step_lowers_the_objective(teacher):
    synthesis = transfer_set.Synthesis(steps=1, learning_rate=0.01)
    synthesizer = transfer_set.Synthesizer(teacher, MEAN, STD, synthesis)
    noise = transfer_set.initial_noise(8, (32, 32, 1), MEAN, STD, seed=0)
    targets = targets_for(teacher, 8, synthesis)
    before = float(synthesizer.objective(noise, targets))
    after = float(synthesizer.objective(synthesizer.optimise(noise, targets), targets))
    assert after < before


def test_the_first_adam_step_moves_each_input_by_the_step_size_against_its_gradient(teacher):
    wide = np.array([127.5], np.float32), np.array([0.01], np.float32)   # box never reached
    synthesis = transfer_set.Synthesis(steps=1, learning_rate=0.05)
    synthesizer = transfer_set.Synthesizer(teacher, *wide, synthesis)
    images = tf.random.stateless_normal([4, 32, 32, 1], [1, 2])
    targets = targets_for(teacher, 4, synthesis)
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = synthesizer.objective(images, targets)
    gradient = 4 * tape.gradient(loss, images).numpy()   # of the batch sum
    step = (synthesizer.optimise(images, targets) - images).numpy()
    # Adam's first step: m_hat / sqrt(v_hat) = g / |g|, i.e. the sign but for epsilon
    np.testing.assert_allclose(step, -0.05 * gradient / (np.abs(gradient) + 1e-8),
                               rtol=1e-4, atol=1e-6)
    assert np.mean(np.abs(np.abs(step) - 0.05) < 1e-4) > 0.9


def test_samples_are_optimised_independently_and_stay_in_the_pixel_range(teacher):
    synthesis = transfer_set.Synthesis(steps=3)
    synthesizer = transfer_set.Synthesizer(teacher, MEAN, STD, synthesis)
    noise = transfer_set.initial_noise(4, (32, 32, 1), MEAN, STD, seed=3)
    targets = targets_for(teacher, 4, synthesis)
    batch = synthesizer.optimise(noise, targets).numpy()
    alone = synthesizer.optimise(noise[:1], targets[:1]).numpy()
    np.testing.assert_allclose(batch[:1], alone, atol=1e-4)
    low, high = transfer_set.pixel_range(MEAN, STD)
    assert batch.min() >= low - 1e-6 and batch.max() <= high + 1e-6
    assert not np.allclose(batch, noise)


def test_synthesised_set_is_seeded_labelled_and_starts_from_the_baseline_noise(teacher):
    synthesis = transfer_set.Synthesis(steps=2)
    first = transfer_set.synthesise(teacher, 6, MEAN, STD, synthesis, batch_size=4, seed=5,
                                    verbose=False)
    assert first.images.dtype == np.uint8 and first.images.shape == (6, 32, 32, 1)
    np.testing.assert_allclose(first.targets, targets_for(teacher, 6, synthesis, seed=5),
                               rtol=1e-6)
    logits = teacher(preprocessing.normalize(first.images, MEAN, STD), training=False)["logits"]
    np.testing.assert_allclose(first.teacher_logits, logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(first.labels, np.argmax(logits, -1))
    assert json.loads(first.settings)["steps"] == 2
    unoptimised = transfer_set.synthesise(teacher, 6, MEAN, STD,
                                          transfer_set.Synthesis(steps=0), batch_size=4,
                                          seed=5, verbose=False)
    baseline = transfer_set.noise_baseline(teacher, 6, MEAN, STD, batch_size=4, seed=5)
    np.testing.assert_array_equal(baseline.images, unoptimised.images)
    assert baseline.targets is None and baseline.kind == "noise"
    assert not np.array_equal(baseline.images, first.images)


# The saved transfer set

def test_transfer_set_save_load_round_trip(tmp_path, teacher):
    rng = np.random.default_rng(0)
    saved = transfer_set.TransferSet(
        rng.integers(0, 256, (5, 32, 32, 1), dtype=np.uint8),
        rng.normal(size=(5, 10)).astype(np.float32),
        softmax(rng.normal(size=(5, 10))).astype(np.float32), json.dumps({"sigma": 5.0}))
    path = str(tmp_path / "sets" / "a.npz")
    transfer_set.save(path, saved)
    loaded = transfer_set.load(path)
    for name in ("images", "teacher_logits", "targets"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(saved, name))
        assert getattr(loaded, name).dtype == getattr(saved, name).dtype
    assert loaded.settings == saved.settings and loaded.kind == "synthesised"
    assert os.listdir(tmp_path / "sets") == ["a.npz"]
    # an existing file is reused as it is, whatever the synthesis settings now
    reused = transfer_set.load_or_build(path, teacher, 99, MEAN, STD,
                                        transfer_set.Synthesis(steps=7))
    np.testing.assert_array_equal(reused.images, saved.images)
    with pytest.raises(ValueError, match="synthesised transfer set, not a noise one"):
        transfer_set.load_or_build(path, teacher, 5, MEAN, STD, synthesis=None)
    noise_path = str(tmp_path / "noise.npz")
    built = transfer_set.load_or_build(noise_path, teacher, 3, MEAN, STD, synthesis=None)
    loaded = transfer_set.load(noise_path)
    assert loaded.kind == "noise" and loaded.targets is None
    np.testing.assert_array_equal(loaded.images, built.images)


# The distiller

def test_train_step_trains_only_the_student_on_tau2_kl_to_the_teacher():
    tf.keras.utils.set_random_seed(0)
    student = ResNet((32, 32, 1), 10, "Student", width=0.125)
    teacher = ResNet((32, 32, 1), 10, "Teacher", width=0.125)
    distiller = DataFreeKD(student, teacher, tau=4.0)
    distiller.compile(optimizer=optimizers.Momentum(0.1))
    images = tf.random.stateless_normal([8, 32, 32, 1], [0, 1])
    labels = np.zeros(8, np.int32)
    t = teacher(images, training=False)["logits"].numpy()
    s = student(images, training=True)["logits"].numpy()
    expected = 16 * np.mean(np.sum(softmax(t / 4) * (log_softmax(t / 4) - log_softmax(s / 4)),
                                   -1))
    teacher_before = [v.numpy().copy() for v in teacher.variables]
    student_before = [v.numpy().copy() for v in student.trainable_variables]
    logs = distiller.train_on_batch(images, labels, return_dict=True)
    assert logs["distillation_loss"] == pytest.approx(expected, rel=1e-4)
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(teacher.variables, teacher_before))
    assert all(not np.array_equal(v.numpy(), b)
               for v, b in zip(student.trainable_variables, student_before))
    assert {v.path for v in distiller.trainable_variables} == {
        v.path for v in student.trainable_variables}


# Data without the training split

def test_load_test_has_no_training_split_and_the_stored_constants():
    data = dataloader.load_test("synthetic", test_subset=50, seed=2)
    full = dataloader.load("synthetic", seed=2)
    assert data.train_images.shape == (0, 32, 32, 3) and len(data.train_labels) == 0
    assert data.image_shape == (32, 32, 3) and not data.segmentation
    np.testing.assert_array_equal(data.test_images, full.test_images[:50])
    np.testing.assert_array_equal(data.mean, synthetic.MEAN)
    np.testing.assert_allclose(synthetic.MEAN, full.mean, rtol=0.03)   # generator moments
    np.testing.assert_allclose(synthetic.STD, full.std, rtol=0.06)     # (before clipping)
    with pytest.raises(ValueError, match="cifar100, fashion_mnist, synthetic"):
        dataloader.load_test("cifar10")


def test_fashion_mnist_test_split_loads_with_no_training_files(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3)
    for name, array in zip(fashion_mnist.FILES[2:], (images, labels)):
        header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes()
        (tmp_path / name).write_bytes(header + array.astype(np.uint8).tobytes())
    data = dataloader.load_test("fashion_mnist", data_dir=str(tmp_path))
    np.testing.assert_array_equal(data.test_images[:, 2:30, 2:30, 0], images)
    np.testing.assert_array_equal(data.test_labels, labels)
    assert len(data.train_images) == 0
    np.testing.assert_array_equal(data.mean, fashion_mnist.MEAN)
    with pytest.raises(FileNotFoundError):
        dataloader.load("fashion_mnist", data_dir=str(tmp_path))


@pytest.mark.skipif(not os.path.isdir(fashion_mnist.DEBIAN_DIR),
                    reason="needs Debian's dataset-fashion-mnist")
def test_fashion_mnist_constants_are_those_of_its_training_set():
    data = dataloader.load("fashion_mnist")
    np.testing.assert_array_equal(fashion_mnist.MEAN, data.mean)
    np.testing.assert_array_equal(fashion_mnist.STD, data.std)


# Through training.train

def tiny(tmp_path, teacher_path, **overrides):
    settings = dict(train_dir=str(tmp_path / "run"), Distillation="DFKD", dataset="synthetic",
                    teacher=teacher_path, train_epoch=1, batch_size=32, val_batch_size=50,
                    width=0.125, test_subset=100, transfer_size=64, dfkd_steps=2, verbose=0,
                    exports="")
    settings.update(overrides)
    return training.Config(**settings)


def saved_teacher(tmp_path, input_shape, num_classes):
    tf.keras.utils.set_random_seed(1)
    path = str(tmp_path / "teacher.keras")
    ResNet(input_shape, num_classes, "Teacher", width=0.125).save(path)
    return path


def test_dfkd_through_train_writes_and_learns_from_its_transfer_set(tmp_path, no_tensorflow_errors):
    """(DFKD's run of tests/test_training_methods.py's every method: the same checks.)"""
    config = tiny(tmp_path, saved_teacher(tmp_path, (32, 32, 3), 100))
    history = training.train(config)
    assert len(history.history["val_accuracy"]) == 1
    assert np.size(sio.loadmat(os.path.join(config.train_dir, "log.mat"))["validation_acc"]) == 1
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["distillation_loss"][0] > 0
    saved = sio.loadmat(os.path.join(config.train_dir, "train_params.mat"))
    assert "Student/full/biases" in saved and not any(k.startswith("Teacher/") for k in saved)
    saved = transfer_set.load(os.path.join(config.train_dir, "transfer_set.npz"))
    assert saved.kind == "synthesised" and saved.images.shape == (64, 32, 32, 3)
    assert json.loads(saved.settings)["steps"] == 2
    assert os.path.exists(os.path.join(config.train_dir, "model.keras"))


@pytest.mark.skipif(not os.path.isdir(fashion_mnist.DEBIAN_DIR),
                    reason="needs Debian's dataset-fashion-mnist")
def test_dfkd_noise_baseline_on_fashion_mnist_never_reads_the_training_files(tmp_path,
                                                                             monkeypatch):
    read = []
    real_read_idx = fashion_mnist.read_idx

    def recording_read_idx(path):
        read.append(os.path.basename(path))
        return real_read_idx(path)

    monkeypatch.setattr(fashion_mnist, "read_idx", recording_read_idx)
    config = tiny(tmp_path, saved_teacher(tmp_path, (32, 32, 1), 10), dataset="fashion_mnist",
                  dfkd_noise_baseline=True, transfer_set=str(tmp_path / "noise.npz"))
    history = training.train(config)
    assert 0 <= history.history["val_accuracy"][0] <= 1
    assert read and all(name.startswith("t10k-") for name in read), read
    assert transfer_set.load(config.transfer_set).kind == "noise"
