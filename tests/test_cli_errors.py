"""A user's mistake, a damaged file, a lost worker or Ctrl-C is one line and
an exit status, never a traceback; test.py scores what the run was validated
on and says so; a run directory never loads its SavedModel. Real processes,
real signals, real files."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.io as sio

from tf_kd import run_record, training
from tf_kd.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TINY = dict(dataset="synthetic", train_epoch=1, batch_size=32, val_batch_size=50,
            width=0.125, train_subset=128, test_subset=100, verbose=0)
TEST_IMAGES = 256     # the synthetic set's test split


def tiny(train_dir, **overrides):
    return training.Config(**{"train_dir": str(train_dir), **TINY, **overrides})


def run(script, *args, **kwargs):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args],
                          capture_output=True, text=True, env=ENV, cwd=ROOT, **kwargs)


def assert_one_line(result, status, *words):
    """`result` exited with `status`, its stderr one line holding `words`."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status and len(lines) == 1, result.stderr[-3000:]
    assert all(word in lines[0] for word in words), lines[0]


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    """A finished teacher run, validated on the first 100 test images (tests/conftest.py's,
    `tiny(main_scope="Teacher")`)."""
    return tiny_teacher


# -- Flags, Ctrl-C, the programs as a library --------------------------------------

def test_flag_mistakes_are_one_line_with_a_pointer_to_helpfull(tmp_path):
    for script, args, words in [
            ("train.py", ["--batch_size=abc"], ["--batch_size=abc"]),
            ("train.py", [f"--train_dir={tmp_path / 'run'}", "stray"], ["'stray'"]),
            ("test.py", [], ["--model"])]:
        result = run(script, *args)
        assert_one_line(result, 2, "error:", *words, f"{script} --helpfull")
    assert not os.path.exists(tmp_path / "run")


def test_ctrl_c_while_tensorflow_loads_is_one_line(tmp_path):
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"),
                                f"--train_dir={tmp_path / 'run'}", "--dataset=synthetic"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=ENV, cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:   # TensorFlow's library is in
        with open(f"/proc/{process.pid}/maps") as maps:
            if "libtensorflow" in maps.read():
                break
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        stderr = process.communicate()[1]
        pytest.fail(f"still running 60 s after Ctrl-C; its stderr: {stderr[-3000:]}")
    assert process.returncode == 130 and stderr == "interrupted (Ctrl-C).\n", stderr[-3000:]
    assert not os.path.exists(tmp_path / "run")


def test_both_programs_import_into_one_process():
    result = subprocess.run([sys.executable, "-c", "import tf_kd.cli.train, tf_kd.cli.evaluate"],
                            capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]


# -- Damaged or foreign files ---------------------------------------------------------

def test_run_records_of_the_wrong_shape_are_refused(teacher, tmp_path):
    good = json.loads((teacher / "run.json").read_text())
    unfinished = {"state": "failed", "config": good["config"], "reason": "killed"}

    def without(key):
        return {k: v for k, v in good.items() if k != key}

    for record, cause in [
            ([good], "is not a JSON object"),
            ({**good, "config": 3}, "config is 3, not an object"),
            ({**good, "state": 5}, "state 5 is not"),
            (without("architecture"), "no architecture"),
            (without("metrics"), "no metrics"),
            ({**unfinished, "reason": 7}, "reason is 7"),
            ({**good, "metrics": {"last_accuracy": "high", "best_accuracy": 1}},
             'metrics.last_accuracy is "high", not a number')]:
        (tmp_path / "run.json").write_text(json.dumps(record))
        with pytest.raises(UserError, match="run.json is not a readable run record") as error:
            run_record.read(tmp_path)
        assert cause in str(error.value)
    # the programs: one line, exit status 2
    (tmp_path / "run.json").write_text(json.dumps(without("architecture")))
    shutil.copy(teacher / "model.keras", tmp_path / "model.keras")
    assert_one_line(run("test.py", f"--model={tmp_path}"), 2, "run.json", "no architecture")
    (tmp_path / "run.json").write_text(json.dumps({**unfinished, "config": 3}))
    assert_one_line(run("train.py", f"--train_dir={tmp_path}", "--resume"), 2,
                    "run.json", "config is 3")


def test_report_lists_a_trial_with_an_empty_log_as_damaged(teacher, tmp_path):
    for trial in ("trial0", "trial1"):
        shutil.copytree(teacher, tmp_path / "runs" / "Teacher" / trial)
    damaged = tmp_path / "runs" / "Teacher" / "trial1" / "log.mat"
    sio.savemat(damaged, {"training_acc": np.zeros(0), "validation_acc": np.zeros(0)})
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "report.py"),
                             f"--root={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}"],
                            capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "| Teacher | 1 |" in result.stdout, result.stdout
    assert f"{damaged} is damaged: it holds 0 validation accuracies" in result.stderr


def test_a_transfer_set_of_the_other_kind_is_refused_before_anything_is_written(
        teacher, tmp_path):
    pixels = np.zeros((64, 32, 32, 3), np.uint8)
    logits = np.zeros((64, 100), np.float32)
    np.savez(tmp_path / "synthesised.npz", images=pixels, teacher_logits=logits,
             targets=logits, settings=np.array("{}"))
    np.savez(tmp_path / "noise.npz", images=pixels, teacher_logits=logits,
             settings=np.array("{}"))
    dfkd = dict(Distillation="DFKD", teacher=str(teacher), transfer_size=64, dfkd_steps=1)
    for name, noise, fix in [("synthesised", True, "drop --dfkd_noise_baseline"),
                             ("noise", False, "pass --dfkd_noise_baseline")]:
        path = tmp_path / f"{name}.npz"
        with pytest.raises(UserError, match=f"--transfer_set={path} holds a {name} .*{fix}"):
            training.train(tiny(tmp_path / "run", transfer_set=str(path),
                                dfkd_noise_baseline=noise, **dfkd))
        assert not os.path.exists(tmp_path / "run" / "run.json")


def test_a_keras_model_without_named_outputs_is_refused(tmp_path):
    import keras

    plain = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(100)])
    plain.save(tmp_path / "plain.keras")
    assert_one_line(run("test.py", f"--model={tmp_path / 'plain.keras'}", "--dataset=synthetic"),
                    2, "plain.keras is not a network saved by train.py")


# -- What test.py scores and loads ----------------------------------------------------

def test_test_py_scores_the_runs_test_images_and_says_which(teacher):
    record = run_record.read(teacher)
    scored = run("test.py", f"--model={teacher}")
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert (f"Top-1 accuracy: {record['metrics']['last_accuracy']:.2f}% "
            f"(first 100 of the {TEST_IMAGES} test images)") in scored.stdout
    everything = run("test.py", f"--model={teacher}", "--test_subset=0")
    assert f"% (the {TEST_IMAGES} test images)" in everything.stdout, everything.stderr


def test_a_run_directory_never_loads_its_saved_model(teacher, tmp_path):
    """A run whose saved_model/ was replaced by a graph that writes a file."""
    import tensorflow as tf

    copy, marker = tmp_path / "run", tmp_path / "the graph ran"
    shutil.copytree(teacher, copy)
    inner = tf.saved_model.load(str(teacher / "saved_model"))

    class Trojan(tf.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
        def serve(self, images):
            tf.io.write_file(str(marker), "ran")
            return self.inner.serve(images)

    shutil.rmtree(copy / "saved_model")
    tf.saved_model.save(Trojan(), str(copy / "saved_model"))
    safe = run("test.py", f"--model={copy}")
    assert safe.returncode == 0 and "Top-1 accuracy" in safe.stdout, safe.stderr[-3000:]
    assert not marker.exists() and "warning" not in safe.stderr
    named = run("test.py", f"--model={copy / 'saved_model'}")   # named: loaded, with a warning
    assert named.returncode == 0 and marker.exists(), named.stderr[-3000:]
    assert "is a SavedModel: it runs the graph it holds, as code" in named.stderr


# -- A lost worker ----------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_lost_worker_is_one_line_and_the_run_can_resume(tmp_path):
    """Two workers on 127.0.0.1; one is killed after its first epoch: the
    other stops within TensorFlow's heartbeat timeout (about 10 s)."""
    ports = [free_port(), free_port()]
    flags = [f"--{k}={v}" for k, v in {**TINY, "train_epoch": 50, "train_subset": 64}.items()]
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                     "task": {"type": "worker", "index": index}}
        workers.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "train.py"), "--strategy=multi_worker",
             f"--train_dir={tmp_path / f'worker{index}'}", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**ENV, "TF_CONFIG": json.dumps(tf_config)}))
    survivor, killed = workers
    try:
        first_epoch = tmp_path / "worker1" / "state" / "epoch1.json"
        deadline = time.time() + 300
        while not first_epoch.exists() and killed.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait() == -signal.SIGKILL
        _, stderr = survivor.communicate(timeout=120)
    finally:
        for worker in workers:
            worker.kill()
    # TensorFlow's runtime logs the abort (C++ error lines) before the program's line
    assert survivor.returncode == 4 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith(
        "error: --strategy=multi_worker: a worker stopped answering"), stderr[-3000:]
    for index, state in [(0, run_record.FAILED), (1, run_record.RUNNING)]:
        train_dir = tmp_path / f"worker{index}"
        assert run_record.read(train_dir)["state"] == state
        assert os.listdir(train_dir / "state"), "no epoch to resume from"
