"""Mixed precision (`--precision`) and XLA (`--jit_compile`): every method's
training step under mixed_bfloat16 gives finite losses close to float32's,
and a mixed-precision run exports float32 models."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import dataloader
from tf_kd import optimizers, training

METHODS = ["None", "Soft_logits", "DML", "FT", "FitNet", "AT", "AB", "VID", "FSP", "KD-SVD",
           "KD-EID", "RKD", "MHGD", "NST", "KA", "DFKD"]
INIT = {"FitNet", "FSP", "AB", "FT", "MHGD", "KA"}


def first_step_losses(key, precision, data, batch):
    """The logged losses of one training step (of the main phase) of `key`
    with networks in `precision`, from the same initial weights."""
    config = training.Config(Distillation=key, dataset="synthetic", width=0.125,
                             precision=precision, init_epoch=0 if key in INIT else -1)
    keras.utils.set_random_seed(0)
    student = training.build_network(config, data, "Student")
    kwargs = {"teacher": training.build_network(config, data, "Teacher")}
    distiller = training.get_distiller(key)(student, **(kwargs if key != "None" else {}),
                                            **({"init_epoch": 0} if key in INIT else {}))
    distiller.compile(optimizer=optimizers.Momentum(0.1))
    distiller.on_epoch_begin(0)
    return {k: float(v) for k, v in distiller.train_step(batch).items() if "loss" in k}


@pytest.fixture(scope="module")
def batch():
    data = dataloader.load("synthetic", train_subset=16)
    images, labels = next(iter(dataloader.train_pipeline(data, 16, seed=0)))
    return data, (images, labels)


@pytest.mark.parametrize("key", METHODS)
def test_bfloat16_step_is_finite_and_close_to_float32(key, batch):
    data, images_labels = batch
    full = first_step_losses(key, "float32", data, images_labels)
    mixed = first_step_losses(key, "mixed_bfloat16", data, images_labels)
    assert full.keys() == mixed.keys() and "loss" in full
    for name in full:
        assert np.isfinite(mixed[name]), (name, mixed)
        # bfloat16 keeps 8 bits of mantissa: a few per cent after a whole network
        assert mixed[name] == pytest.approx(full[name], rel=0.05, abs=1e-3), name


def test_float16_with_loss_scaling_trains_a_clipped_method(tiny_teacher, tmp_path):
    teacher = tiny_teacher      # tests/conftest.py's, of this width and dataset
    tiny = dict(dataset="synthetic", train_epoch=1, batch_size=32, width=0.125,
                train_subset=64, test_subset=50, verbose=0)
    result = training.train(training.Config(
        train_dir=str(tmp_path / "svd"), Distillation="KD-SVD", teacher=str(teacher),
        precision="mixed_float16", **tiny))
    assert np.all(np.isfinite(result.history["loss"]))


def test_mixed_precision_run_exports_float32_models(tmp_path):
    config = training.Config(train_dir=str(tmp_path / "run"), dataset="synthetic",
                             train_epoch=1, batch_size=32, width=0.125, train_subset=64,
                             test_subset=50, verbose=0, precision="mixed_bfloat16",
                             jit_compile=True)
    result = training.train(config)
    model = keras.models.load_model(os.path.join(config.train_dir, "model.keras"))
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    assert model.compute_dtype == "float32"
    logits = model(images, training=False)["logits"]
    assert logits.dtype == tf.float32
    saved = tf.saved_model.load(os.path.join(config.train_dir, "saved_model"))
    np.testing.assert_allclose(saved.serve(images)["logits"], logits, rtol=1e-4, atol=1e-4)
    assert result.record["config"]["precision"] == "mixed_bfloat16"


def test_teacher_precision_puts_the_frozen_teacher_alone_in_bfloat16(tiny_teacher, tmp_path):
    tiny = dict(dataset="synthetic", train_epoch=1, batch_size=32, width=0.125,
                train_subset=64, test_subset=50, verbose=0)
    teacher = tiny_teacher      # tests/conftest.py's, of this width and dataset
    config = training.Config(train_dir=str(tmp_path / "kd"), Distillation="Soft_logits",
                             teacher=str(teacher), teacher_precision="mixed_bfloat16", **tiny)
    data = dataloader.load("synthetic", train_subset=64, test_subset=50)
    distiller = training.build_distiller(config, data)
    assert distiller.teacher.dtype_policy.name == "mixed_bfloat16"
    assert distiller.student.dtype_policy.name == "float32"
    # the same trained weights in float32: the outputs agree to bfloat16's precision
    full = training.load_teacher(training.Config(**{**tiny, "Distillation": "Soft_logits",
                                                    "teacher": str(teacher)}), data)
    images = data.test_images[:16].astype("float32")
    images = (images - data.mean) / data.std
    mixed_logits = distiller.teacher(images, training=False)["logits"]
    full_logits = full(images, training=False)["logits"]
    assert mixed_logits.dtype == tf.float32
    scale = float(tf.reduce_max(tf.abs(full_logits)))
    assert float(tf.reduce_max(tf.abs(mixed_logits - full_logits))) < 0.05 * scale
    assert float(tf.reduce_max(tf.abs(mixed_logits - full_logits))) > 0   # really bfloat16
    result = training.train(config)
    assert np.all(np.isfinite(result.history["loss"]))
    assert result.record["config"]["teacher_precision"] == "mixed_bfloat16"
    model = keras.models.load_model(os.path.join(config.train_dir, "model.keras"))
    assert model.compute_dtype == "float32"
