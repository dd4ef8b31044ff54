"""Runs never lose work and never report a wrong number: kills at every stage
of a run and exact resume, a damaged state, divergence, and a resume with
other settings. Faults are real: SIGKILL, SIGTERM, damaged state files. (A
full disk: tests/test_disk_full.py; --overwrite and bad input:
tests/test_run_refusals.py.)"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.io as sio

from tf_kd import run_record, training
from tf_kd.errors import Diverged, UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TINY = dict(dataset="synthetic", train_epoch=3, batch_size=32, val_batch_size=50,
            width=0.125, train_subset=256, test_subset=100, verbose=0)
FLAGS = [f"--{k}={v}" for k, v in TINY.items()]


def tiny(train_dir, **overrides):
    return training.Config(**{"train_dir": str(train_dir), **TINY, **overrides})


def outcome(train_dir):
    """What a finished run reports: its weights and its log."""
    weights = {k: v for k, v in sio.loadmat(os.path.join(train_dir, "train_params.mat")).items()
               if not k.startswith("__")}
    log = {k: np.ravel(v) for k, v in sio.loadmat(os.path.join(train_dir, "log.mat")).items()
           if not k.startswith("__")}
    return weights, log


def assert_same_outcome(train_dir, reference):
    weights, log = outcome(train_dir)
    expected_weights, expected_log = reference
    assert sorted(weights) == sorted(expected_weights)
    for name in weights:   # bit for bit
        np.testing.assert_array_equal(weights[name], expected_weights[name], err_msg=name)
    for name in expected_log:
        np.testing.assert_array_equal(log[name], expected_log[name], err_msg=name)
    assert run_record.read(train_dir)["state"] == run_record.FINISHED
    assert not os.path.exists(os.path.join(train_dir, "state"))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The uninterrupted run (finished): its directory."""
    train_dir = tmp_path_factory.mktemp("reference") / "run"
    training.train(tiny(train_dir))
    return train_dir


@pytest.fixture(scope="module")
def reference(reference_run):
    """What the uninterrupted run reports."""
    return outcome(reference_run)


def killed_run(train_dir, point, *flags):
    """train.py (with `flags` added) killed by SIGKILL at `point` (see tests/kill_at.py)."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "kill_at.py"), point,
                             "--", f"--train_dir={train_dir}", *FLAGS, *flags],
                            capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]


# The runs killed at a point, each once for the tests of this module (a test that
# changes one works on a copy): during the state write of epoch 2, after the last
# epoch's weights before its state commits, and at the first export (every epoch done).
@pytest.fixture(scope="module")
def killed_in_epoch2(tmp_path_factory):
    """A run killed while epoch 2's state was written: epoch 1's state is complete."""
    train_dir = tmp_path_factory.mktemp("killed_in_epoch2") / "run"
    killed_run(train_dir, "epoch2.weights.h5")
    return train_dir


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run killed before epoch 3's state committed: epoch 2's state is complete."""
    train_dir = tmp_path_factory.mktemp("stopped") / "run"
    killed_run(train_dir, "epoch3.json")
    return train_dir


@pytest.fixture(scope="module")
def killed_at_first_export(tmp_path_factory):
    """A run killed between the end of fit() and its record, as its first
    export (train_params.mat) was put in place: every epoch's state is complete."""
    train_dir = tmp_path_factory.mktemp("killed_at_first_export") / "run"
    killed_run(train_dir, "train_params.mat")
    return train_dir


KILLED = {"epoch2.weights.h5": "killed_in_epoch2", "epoch3.json": "stopped",
          "train_params.mat": "killed_at_first_export"}


@pytest.mark.parametrize("point", [
    "epoch2.weights.h5",      # during the state write of epoch 2
    "epoch3.json",            # after the last epoch's weights, before its state commits
    "train_params.mat",       # between the end of fit() and the record: first export
    # during each later export, and at the finished record itself (1 at start + 1), of
    # the run killed at the first export, resumed: it writes every export again
    "model.keras", "saved_model", "model.tflite", "run.json:2",
])
def test_killed_at_any_stage_resumes_to_the_uninterrupted_result(point, reference, request,
                                                                 tmp_path):
    train_dir = tmp_path / "run"
    if point in KILLED:
        shutil.copytree(request.getfixturevalue(KILLED[point]), train_dir)
    else:
        shutil.copytree(request.getfixturevalue("killed_at_first_export"), train_dir)
        killed_run(train_dir, point, "--resume")
    record = run_record.read(train_dir)
    assert record["state"] == run_record.RUNNING          # never taken for finished
    assert record["epochs_done"] == {"epoch2.weights.h5": 1, "epoch3.json": 2}.get(point, 3)
    with pytest.raises(UserError, match="--resume"):
        training.train(tiny(train_dir))
    with pytest.raises(UserError, match="unfinished"):    # test.py and --teacher refuse it
        run_record.finished_artefact(str(train_dir), "--model")
    training.train(tiny(train_dir, resume=True))
    assert_same_outcome(train_dir, reference)
    assert not [n for n in os.listdir(train_dir) if n.startswith(".partial-")]


def test_killed_during_an_epoch_resumes_to_the_uninterrupted_result(reference, tmp_path):
    train_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"),
                                f"--train_dir={train_dir}", *FLAGS],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=ENV, cwd=ROOT)
    first_epoch = train_dir / "state" / "epoch1.json"
    deadline = time.time() + 120
    while not first_epoch.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert run_record.read(train_dir)["epochs_done"] < 3
    training.train(tiny(train_dir, resume=True))
    assert_same_outcome(train_dir, reference)


def test_sigterm_marks_the_run_failed_and_resume_finishes_it(reference, tmp_path):
    train_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"),
                                f"--train_dir={train_dir}", *FLAGS],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=ENV, cwd=ROOT)
    first_epoch = train_dir / "state" / "epoch1.json"
    while not first_epoch.exists() and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate()
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    record = run_record.read(train_dir)
    assert record["state"] == run_record.FAILED and "SIGTERM" in record["reason"]
    training.train(tiny(train_dir, resume=True))
    assert_same_outcome(train_dir, reference)


# (A full disk at any moment: tests/test_disk_full.py.)


def test_any_directory_name_finishes_resumes_and_its_exports_load(reference, tmp_path):
    """TensorFlow takes some file names for glob patterns: `[1]`, `*`, `?`."""
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from tf_kd import exports

    train_dir = tmp_path / "a[1] b*?é"
    killed_run(train_dir, "epoch2.weights.h5")
    training.train(tiny(train_dir, resume=True))
    assert_same_outcome(train_dir, reference)
    assert os.listdir(train_dir / "train") and os.listdir(train_dir / "validation")  # TensorBoard
    images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    logits = keras.models.load_model(train_dir / "model.keras")(images)["logits"]
    with exports.glob_free(train_dir / "saved_model") as path:
        saved_model = tf.saved_model.load(path)
    np.testing.assert_allclose(saved_model.serve(images)["logits"], logits, atol=1e-5)
    lite = Interpreter(str(train_dir / "model.tflite")).get_signature_runner()   # as the README
    np.testing.assert_allclose(lite(image=images)["logits"], logits, atol=1e-4)
    # the very file a directory of a plain name gets
    shutil.copytree(train_dir / "saved_model", tmp_path / "plain")
    plain = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "plain")).convert()
    assert (train_dir / "model.tflite").read_bytes() == plain


# -- A damaged state -------------------------------------------------------------

def test_a_state_without_its_weights_is_refused_not_restarted(stopped, tmp_path):
    train_dir = tmp_path / "run"
    shutil.copytree(stopped, train_dir)
    (train_dir / "state" / "epoch2.weights.h5").unlink()
    with pytest.raises(UserError, match=r"state/epoch2\.weights\.h5 is missing .*--overwrite"):
        training.train(tiny(train_dir, resume=True))
    assert (train_dir / "state" / "epoch2.json").exists()


def test_a_newer_state_without_its_weights_resumes_from_the_older_and_says_so(
        stopped, reference, tmp_path, capsys):
    train_dir = tmp_path / "run"
    shutil.copytree(stopped, train_dir)
    state = train_dir / "state"
    (state / "epoch3.weights.h5").unlink()
    history = json.loads((state / "epoch2.json").read_text())["history"]
    (state / "epoch3.json").write_text(json.dumps(
        {"epochs": 3, "history": {k: v + [0.5] for k, v in history.items()}}))
    training.train(tiny(train_dir, resume=True))
    assert ("state/epoch3.weights.h5 is missing: resuming from the state of epoch 2."
            in capsys.readouterr().out)
    assert_same_outcome(train_dir, reference)


@pytest.mark.parametrize("content", [
    "[]", '{"history": 3}', '{"history": {"loss": ["a", "b"]}}',
    '{"history": {"loss": [true, false]}}', '{"history": {"loss": [1.0]}}',  # not 2 epochs
])
def test_a_state_record_of_the_wrong_form_is_named(content, stopped, tmp_path):
    train_dir = tmp_path / "run"
    shutil.copytree(stopped, train_dir)
    (train_dir / "state" / "epoch2.json").write_text(content)
    with pytest.raises(UserError, match=r"state/epoch2\.json is damaged .*--overwrite"):
        training.train(tiny(train_dir, resume=True))


# -- Divergence --------------------------------------------------------------

def test_divergence_stops_the_run_and_marks_it_failed(tmp_path):
    train_dir = tmp_path / "run"
    with pytest.raises(Diverged, match=r"epoch 1, step \d+: non-finite loss \(.*loss"):
        training.train(tiny(train_dir, learning_rate=1e6))
    record = run_record.read(train_dir)
    assert record["state"] == run_record.FAILED and "non-finite" in record["reason"]
    for artefact in ("train_params.mat", "model.keras", "model.tflite"):
        assert not os.path.exists(train_dir / artefact)


# -- Resuming with other settings ---------------------------------------------------

def test_resume_with_other_flags_names_them(killed_in_epoch2, reference_run, tmp_path):
    train_dir = tmp_path / "run"
    shutil.copytree(killed_in_epoch2, train_dir)
    with pytest.raises(UserError, match=r"--learning_rate=0.1 \(given 0.05\)"):
        training.train(tiny(train_dir, resume=True, learning_rate=0.05))
    # a finished run is left alone by --resume
    finished = tmp_path / "finished"
    shutil.copytree(reference_run, finished)
    assert training.train(tiny(finished, resume=True)).record["state"] == run_record.FINISHED


def test_a_setting_newer_than_the_record_resumes_at_its_default(killed_in_epoch2, tmp_path):
    train_dir = tmp_path / "run"
    shutil.copytree(killed_in_epoch2, train_dir)
    record = run_record.read(train_dir)
    del record["config"]["teacher_precision"]      # as a run recorded before the flag existed
    run_record.write(train_dir, record)
    assert training.train(tiny(train_dir, resume=True)).record["state"] == run_record.FINISHED
