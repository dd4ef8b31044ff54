"""End-to-end runs of train.py / test.py on tiny configurations."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io as sio

from tf_kd import training
from tf_kd.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION = "/usr/share/datasets/fashion-mnist"


# what TensorFlow prints unasked: start-up banners, C++ and Python INFO lines
NOISE = ("oneDNN custom operations", "absl::InitializeLog", "I0000", "INFO:")


def run(script, *args):
    """The program's stdout; it must succeed, and print none of TensorFlow's
    noise (in an environment that does not ask for quiet)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *args],
                            capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [n for n in NOISE if n in result.stderr], result.stderr[-3000:]
    return result.stdout


def tiny(train_dir, **overrides):
    settings = dict(train_dir=str(train_dir), dataset="synthetic", train_epoch=1,
                    batch_size=32, val_batch_size=50, width=0.125,
                    train_subset=128, test_subset=100, verbose=0)
    settings.update(overrides)
    return training.Config(**settings)


def last_validation(train_dir):
    return float(np.ravel(sio.loadmat(os.path.join(train_dir, "log.mat"))["validation_acc"])[-1])


def test_train_py_and_test_py_on_synthetic(tmp_path):
    train_dir = str(tmp_path / "run")
    out = run("train.py", "--dataset=synthetic", f"--train_dir={train_dir}",
              "--strategy=mirrored", "--train_epoch=1", "--batch_size=32", "--width=0.125",
              "--train_subset=128", "--test_subset=100", "--verbose=0")
    assert "Final validation accuracy" in out
    for name in ["log.mat", "train_params.mat", "model.keras", "saved_model"]:
        assert os.path.exists(os.path.join(train_dir, name)), name
    assert any(f.startswith("events") for _, _, files in os.walk(train_dir) for f in files)
    log = sio.loadmat(os.path.join(train_dir, "log.mat"))
    assert np.size(log["training_acc"]) == np.size(log["validation_acc"]) == 1
    expected = last_validation(train_dir)
    # the architecture and the dataset come from the run's record
    for model in ["", "model.keras", "saved_model", "train_params.mat"]:
        out = run("test.py", f"--model={os.path.join(train_dir, model)}", "--test_subset=100")
        assert f"Top-1 accuracy: {expected:.2f}%" in out, (model, out)


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="needs Debian's dataset-fashion-mnist")
def test_one_epoch_on_a_fashion_mnist_slice(tmp_path):
    config = tiny(tmp_path / "fm", dataset="fashion_mnist", train_subset=512,
                  test_subset=200, width=0.25)
    history = training.train(config)
    assert len(history.history["val_accuracy"]) == 1
    assert 0.0 <= history.history["val_accuracy"][0] <= 1.0
    assert np.isfinite(history.history["loss"][0])


class Interrupt(Exception):
    pass



def test_resume_continues_an_interrupted_run(tmp_path):
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise Interrupt()

    config = tiny(tmp_path / "r", train_epoch=3)
    with pytest.raises(Interrupt):
        training.train(config, callbacks=[Crash()])
    first = np.ravel(sio.loadmat(os.path.join(config.train_dir, "log.mat"))["validation_acc"])
    assert len(first) == 2
    with pytest.raises(UserError, match="--resume"):
        training.train(config)
    config.resume = True
    epochs = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs.append(epoch)

    training.train(config, callbacks=[Record()])
    assert epochs == [2]
    log = np.ravel(sio.loadmat(os.path.join(config.train_dir, "log.mat"))["validation_acc"])
    assert len(log) == 3
    np.testing.assert_allclose(log[:2], first)
    assert not os.path.exists(os.path.join(config.train_dir, "state"))
    with pytest.raises(UserError, match="--overwrite"):
        training.train(tiny(tmp_path / "r"))


def test_bad_names_list_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="MHGD"):
        training.train(tiny(tmp_path / "a", Distillation="KD-XYZ"))
    with pytest.raises(ValueError, match="fashion_mnist"):
        training.train(tiny(tmp_path / "b", dataset="imagenet"))


def test_distillation_without_teacher_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="--teacher"):
        training.train(tiny(tmp_path / "c", Distillation="Soft_logits"))


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    train_dir = tmp_path_factory.mktemp("teacher") / "run"
    training.train(tiny(train_dir, main_scope="Teacher"))
    return str(train_dir)


INIT_KEYS = {"FitNet", "FSP", "AB", "FT", "MHGD", "KA"}


@pytest.mark.parametrize("key", ["Soft_logits", "DML", "FT", "FitNet", "AT", "AB", "VID",
                                 "FSP", "KD-SVD", "KD-EID", "RKD", "MHGD", "NST", "KA",
                                 "DFKD"])
def test_every_method_runs_through_train(key, teacher_run, tmp_path):
    config = tiny(tmp_path / key, Distillation=key,
                  teacher="" if key == "DML" else os.path.join(teacher_run, "model.keras"),
                  init_epoch=1 if key in INIT_KEYS else -1,
                  **(dict(transfer_size=128, dfkd_steps=2) if key == "DFKD" else {}))
    history = training.train(config)
    epochs = 2 if key in INIT_KEYS else 1
    assert len(history.history["val_accuracy"]) == epochs
    log = sio.loadmat(os.path.join(config.train_dir, "log.mat"))
    assert np.size(log["validation_acc"]) == epochs
    assert np.all(np.isfinite(history.history["loss"]))
    saved = sio.loadmat(os.path.join(config.train_dir, "train_params.mat"))
    assert "Student/full/biases" in saved and not any(k.startswith("Teacher/") for k in saved)


def test_teacher_from_tf1_mat_file(teacher_run, tmp_path):
    config = tiny(tmp_path / "mat", Distillation="AT",
                  teacher=os.path.join(teacher_run, "train_params.mat"))
    assert np.isfinite(training.train(config).history["loss"][0])


def test_mismatched_teacher_names_the_flag_or_the_variable(teacher_run, tmp_path):
    config = tiny(tmp_path / "bad", Distillation="RKD", width=0.25,
                  teacher=os.path.join(teacher_run, "train_params.mat"))
    with pytest.raises(UserError, match="--width=0.125"):    # from the teacher's run record
        training.train(config)
    outside = tmp_path / "ResNet.mat"                         # a .mat outside any run
    shutil.copy(config.teacher, outside)
    config.teacher = str(outside)
    with pytest.raises(UserError, match="Teacher/conv0/weights"):
        training.train(config)
    assert not os.path.exists(config.train_dir)


def test_exports_load_without_this_project(teacher_run, tmp_path):
    script = f"""
import numpy as np, keras, tensorflow as tf
x = np.random.RandomState(0).randn(3, 32, 32, 3).astype("float32")
model = keras.models.load_model({os.path.join(teacher_run, 'model.keras')!r})
saved = tf.saved_model.load({os.path.join(teacher_run, 'saved_model')!r})
a = model(x, training=False)["logits"].numpy()
b = saved.serve(x)["logits"].numpy()
assert a.shape == (3, 100) and np.allclose(a, b, atol=1e-4), np.abs(a - b).max()
lite = tf.lite.Interpreter({os.path.join(teacher_run, 'model.tflite')!r})
runner = lite.get_signature_runner()
c = runner(image=x[:1])["logits"]
assert np.allclose(a[:1], c, atol=1e-3), np.abs(a[:1] - c).max()
print("exports ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=str(tmp_path), env={k: v for k, v in os.environ.items()
                                                    if k != "PYTHONPATH"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exports ok" in result.stdout
