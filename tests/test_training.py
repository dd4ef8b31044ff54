"""End-to-end runs of train.py / test.py on tiny configurations (every method through
`training.train`: tests/test_training_methods.py)."""

import os
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
                    train_subset=128, test_subset=100, verbose=0, exports="")
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
    # the architecture and the dataset come from the run's record (test.py on a run
    # directory, its saved_model/ and its train_params.mat, also without TensorFlow's
    # noise: docs/training.md's lines, run by tests/test_readme.py)
    out = run("test.py", f"--model={os.path.join(train_dir, 'model.keras')}", "--test_subset=100")
    assert f"Top-1 accuracy: {expected:.2f}%" in out, out


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="needs Debian's dataset-fashion-mnist")
def test_one_epoch_on_a_fashion_mnist_slice(tmp_path):
    config = tiny(tmp_path / "fm", dataset="fashion_mnist", width=0.25)
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
    with pytest.raises(UserError, match="--exports=keras: a comma-separated list of "
                                        "saved_model, tflite, or empty"):
        training.train(tiny(tmp_path / "e", exports="keras"))
    with pytest.raises(UserError, match="--exports=tflite: tflite is converted from the "
                                        "SavedModel: add saved_model"):
        training.train(tiny(tmp_path / "e", exports="tflite"))
    assert not os.path.exists(tmp_path / "e")


def test_distillation_without_teacher_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="--teacher"):
        training.train(tiny(tmp_path / "c", Distillation="Soft_logits"))
