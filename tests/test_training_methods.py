"""Every method through `training.train` on a tiny configuration, distilling
from a trained teacher run (its `.keras`, its TF1 `.mat`), and that run's
exports loading without this project. (train.py and test.py themselves:
tests/test_training.py.)"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io as sio

from test_training import tiny
from tf_kd import training
from tf_kd.errors import UserError


@pytest.fixture(scope="module")
def teacher_run(tiny_teacher):
    """The tiny teacher of tests/conftest.py: `tiny(main_scope="Teacher")`."""
    return str(tiny_teacher)


INIT_KEYS = {"FitNet", "FSP", "AB", "FT", "MHGD", "KA"}


# The teacher is the run's TF1 `.mat` file (its `.keras` file, read whole by Keras, is the
# teacher of tests/test_dfkd.py's run through training.train, DFKD's with the same checks,
# and of the runs of tests/test_precision.py, tests/test_run_refusals.py, ...).
@pytest.mark.parametrize("key", ["Soft_logits", "DML", "FT", "FitNet", "AT", "AB", "VID",
                                 "FSP", "KD-SVD", "KD-EID", "RKD", "MHGD", "NST", "KA"])
def test_every_method_runs_through_train(key, teacher_run, tmp_path, no_tensorflow_errors):
    config = tiny(tmp_path / key, Distillation=key,
                  teacher="" if key == "DML" else os.path.join(teacher_run, "train_params.mat"),
                  init_epoch=1 if key in INIT_KEYS else -1)
    history = training.train(config)
    epochs = 2 if key in INIT_KEYS else 1
    assert len(history.history["val_accuracy"]) == epochs
    log = sio.loadmat(os.path.join(config.train_dir, "log.mat"))
    assert np.size(log["validation_acc"]) == epochs
    assert np.all(np.isfinite(history.history["loss"]))
    saved = sio.loadmat(os.path.join(config.train_dir, "train_params.mat"))
    assert "Student/full/biases" in saved and not any(k.startswith("Teacher/") for k in saved)
    # `tiny` asks for no deployment export (--exports=): the files a teacher is read from
    assert history.record["artefacts"] == ["log.mat", "train_params.mat", "model.keras"]
    assert not os.path.exists(os.path.join(config.train_dir, "saved_model"))


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
