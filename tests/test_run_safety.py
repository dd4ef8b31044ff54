"""Runs never lose work and never report a wrong number: kills at every stage
of a run and exact resume, a full disk, divergence, a safe --overwrite, and a
clear error for bad input. Faults are real: SIGKILL, a full filesystem,
truncated and foreign files."""

import dataclasses
import hashlib
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

import dataloader
from dataloader.dataset import Dataset
from tf_kd import evaluation, run_record, training
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
def reference(tmp_path_factory):
    """The uninterrupted run."""
    train_dir = tmp_path_factory.mktemp("reference") / "run"
    training.train(tiny(train_dir))
    return outcome(train_dir)


def killed_run(train_dir, point):
    """train.py killed by SIGKILL at `point` (see tests/kill_at.py)."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "kill_at.py"), point,
                             "--", f"--train_dir={train_dir}", *FLAGS],
                            capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]


@pytest.mark.parametrize("point", [
    "epoch2.weights.h5",      # during the state write of epoch 2
    "epoch3.json",            # after the last epoch's weights, before its state commits
    "train_params.mat",       # between the end of fit() and the record: first export
    "model.keras", "saved_model", "model.tflite",   # during each export
    "run.json:5",             # the finished record itself (1 at start + 3 epochs + 1)
])
def test_killed_at_any_stage_resumes_to_the_uninterrupted_result(point, reference, tmp_path):
    train_dir = tmp_path / "run"
    killed_run(train_dir, point)
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


def test_a_full_disk_keeps_the_last_state_and_resume_finishes(reference, tmp_path):
    import keras

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("mounting a small filesystem needs root")
    try:
        filler = disk / "filler"

        class FillTheDisk(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):   # after epoch 1's state is saved
                if epoch == 0:
                    with open(filler, "wb") as f:
                        try:
                            while True:
                                f.write(b"\0" * 65536)
                                f.flush()
                        except OSError:
                            pass

        train_dir = disk / "run"
        with pytest.raises(OSError) as error:
            training.train(tiny(train_dir), callbacks=[FillTheDisk()])
        assert error.value.errno == 28    # ENOSPC
        assert run_record.read(train_dir)["epochs_done"] == 1
        assert not [n for n in os.listdir(train_dir / "state") if n.startswith(".partial-")]
        filler.unlink()
        training.train(tiny(train_dir, resume=True))
        assert_same_outcome(train_dir, reference)
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)   # TensorBoard may hold a file


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

@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run killed before epoch 3's state committed: epoch 2's state is complete."""
    train_dir = tmp_path_factory.mktemp("stopped") / "run"
    killed_run(train_dir, "epoch3.json")
    return train_dir


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


def test_a_teacher_with_non_finite_weights_is_refused(tmp_path):
    teacher = tmp_path / "teacher"
    training.train(tiny(teacher, main_scope="Teacher", train_epoch=1))
    weights = sio.loadmat(teacher / "train_params.mat")
    weights["Teacher/conv0/weights"][0, 0, 0, 0] = np.nan
    sio.savemat(tmp_path / "nan.mat", weights)
    with pytest.raises(UserError, match="nan.mat holds non-finite weights"):
        training.train(tiny(tmp_path / "student", Distillation="Soft_logits",
                            teacher=str(tmp_path / "nan.mat")))
    assert not os.path.exists(tmp_path / "student")


# -- --overwrite and the train_dir -----------------------------------------------

@pytest.fixture
def finished(tmp_path):
    train_dir = tmp_path / "finished"
    training.train(tiny(train_dir, train_epoch=1))
    return train_dir


def test_overwrite_refuses_what_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a run of this project"):
        training.train(tiny(tmp_path, overwrite=True))
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_overwrite_checks_everything_before_it_removes_anything(finished):
    before = sorted(os.listdir(finished))
    for bad in [dict(teacher="no/such/teacher.keras", Distillation="AT"),
                dict(batch_size=0), dict(dataset="imagenet")]:
        with pytest.raises(UserError):
            training.train(tiny(finished, overwrite=True, **bad))
    assert sorted(os.listdir(finished)) == before
    assert run_record.read(finished)["state"] == run_record.FINISHED


def test_overwrite_replaces_only_what_the_run_wrote(finished):
    (finished / "notes.txt").write_text("mine")
    result = training.train(tiny(finished, overwrite=True, train_epoch=1, seed=1))
    assert (finished / "notes.txt").read_text() == "mine"
    assert result.record["config"]["seed"] == 1
    assert run_record.read(finished)["state"] == run_record.FINISHED


def test_resume_with_other_flags_names_them(finished, tmp_path):
    train_dir = tmp_path / "run"
    killed_run(train_dir, "epoch2.weights.h5")
    with pytest.raises(UserError, match=r"--learning_rate=0.1 \(given 0.05\)"):
        training.train(tiny(train_dir, resume=True, learning_rate=0.05))
    # a finished run is left alone by --resume
    assert training.train(tiny(finished, resume=True, train_epoch=1)).record["state"] == run_record.FINISHED


def test_a_setting_newer_than_the_record_resumes_at_its_default(tmp_path):
    train_dir = tmp_path / "run"
    killed_run(train_dir, "epoch2.weights.h5")
    record = run_record.read(train_dir)
    del record["config"]["teacher_precision"]      # as a run recorded before the flag existed
    run_record.write(train_dir, record)
    assert training.train(tiny(train_dir, resume=True)).record["state"] == run_record.FINISHED


# -- Bad input: a clear error, before anything is written ------------------------

@pytest.mark.parametrize("overrides, flag", [
    (dict(train_epoch=0), "--train_epoch=0"),
    (dict(train_epoch=-3), "--train_epoch=-3"),
    (dict(batch_size=0), "--batch_size=0"),
    (dict(batch_size=1000), "--batch_size=1000"),
    (dict(width=0.0), "--width=0.0"),
    (dict(learning_rate=-0.1), "--learning_rate=-0.1"),
    (dict(init_epoch=-2), "--init_epoch=-2"),
    (dict(Distillation="KD-XYZ"), "MHGD"),
    (dict(dataset="imagenet"), "fashion_mnist"),
    (dict(teacher="x.keras"), "takes no teacher"),
    (dict(Distillation="DML", teacher="x.keras"), "takes no teacher"),
    (dict(Distillation="AT"), "needs a trained teacher"),
    (dict(Distillation="AT", teacher="missing.keras"), "no such file"),
    (dict(resume=True, overwrite=True), "exclude each other"),
    (dict(teacher_precision="bfloat16"), "--teacher_precision=bfloat16: valid: float32"),
    (dict(teacher_precision="mixed_bfloat16"), "has no frozen teacher: drop"),
    (dict(Distillation="DML", teacher_precision="mixed_bfloat16"), "trains its own: use --precision"),
    (dict(data_dir="/nonexistent"), "--data_dir=/nonexistent is not a directory"),
])
def test_bad_flags_are_named_before_anything_is_written(overrides, flag, tmp_path):
    with pytest.raises(UserError, match=flag.replace(".", r"\.")):
        training.train(tiny(tmp_path / "run", **overrides))
    assert not os.path.exists(tmp_path / "run")


def test_corrupt_teacher_files_name_the_file_and_the_cause(finished, tmp_path):
    text = tmp_path / "teacher.mat"
    text.write_text("not a mat file")
    truncated_mat = tmp_path / "truncated.mat"
    truncated_mat.write_bytes((finished / "train_params.mat").read_bytes()[:3000])
    truncated_keras = tmp_path / "truncated.keras"
    truncated_keras.write_bytes((finished / "model.keras").read_bytes()[:5000])
    for path, cause in [(text, "not a MATLAB .mat file"), (truncated_mat, "damaged .mat"),
                        (truncated_keras, "not a readable .keras file")]:
        with pytest.raises(UserError, match=f"{path.name}.*{cause}") as error:
            training.train(tiny(tmp_path / "run", Distillation="AT", teacher=str(path)))
        assert "not found" not in str(error.value)      # the file is there, damaged
    assert not os.path.exists(tmp_path / "run")


def test_a_teacher_run_must_be_a_finished_teacher(finished, tmp_path):
    with pytest.raises(UserError, match="--main_scope=Teacher"):
        training.train(tiny(tmp_path / "run", Distillation="AT", teacher=str(finished)))
    record = run_record.read(finished)
    record["state"] = run_record.RUNNING
    run_record.write(finished, record)
    with pytest.raises(UserError, match="unfinished"):
        training.train(tiny(tmp_path / "run", Distillation="AT", teacher=str(finished)))
    (finished / "run.json").write_text("{trunc")
    with pytest.raises(UserError, match="run.json is not a readable run record"):
        training.train(tiny(tmp_path / "run", Distillation="AT", teacher=str(finished)))


def test_a_teacher_whose_model_differs_from_its_record_is_refused(tmp_path):
    teacher = tmp_path / "teacher"
    training.train(tiny(teacher, main_scope="Teacher", train_epoch=1))
    model = teacher / "model.keras"
    assert run_record.read(teacher)["sha256"]["model.keras"] == hashlib.sha256(
        model.read_bytes()).hexdigest()
    student = tiny(tmp_path / "student", Distillation="Soft_logits", teacher=str(teacher),
                   train_epoch=1)
    original = model.read_bytes()
    for changed in [original[:-1] + bytes([original[-1] ^ 1]), original + b"\0"]:
        model.write_bytes(changed)
        for named in (teacher, model):
            with pytest.raises(UserError, match="model.keras: the file is not the one its run "
                                                "wrote"):
                training.train(dataclasses.replace(student, teacher=str(named)))
    assert not os.path.exists(tmp_path / "student")
    model.write_bytes(original)
    assert training.train(student).record["state"] == run_record.FINISHED


def test_a_transfer_set_that_does_not_fit_the_teacher_is_refused(tmp_path):
    teacher = tmp_path / "teacher"
    training.train(tiny(teacher, main_scope="Teacher", train_epoch=1))
    dfkd = dict(Distillation="DFKD", teacher=str(teacher), transfer_size=64, dfkd_steps=1)
    pixels = np.zeros((64, 32, 32, 3), np.uint8)
    for name, images, logits, match in [
            ("gray.npz", pixels[..., :1], np.zeros((64, 100)), "shape"),
            ("classes.npz", pixels, np.zeros((64, 10)), "100 classes")]:
        np.savez(tmp_path / name, images=images, teacher_logits=logits.astype(np.float32),
                 settings=np.array("{}"))
        with pytest.raises(UserError, match=match):
            training.train(tiny(tmp_path / "run", transfer_set=str(tmp_path / name), **dfkd))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "classes.npz").read_bytes()[:2000])
    with pytest.raises(UserError, match="cut.npz is not a readable transfer set"):
        training.train(tiny(tmp_path / "run", transfer_set=str(tmp_path / "cut.npz"), **dfkd))
    assert not os.path.exists(tmp_path / "run")


def test_command_line_errors_have_no_traceback(finished, tmp_path):
    def run(script, *args):
        return subprocess.run([sys.executable, os.path.join(ROOT, script), *args],
                              capture_output=True, text=True, env=ENV, cwd=ROOT)

    bad = run("train.py", f"--train_dir={tmp_path / 'run'}", "--batch_size=0", *FLAGS[:1])
    assert bad.returncode == 2 and "error: --batch_size=0" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr and not os.path.exists(tmp_path / "run")
    # the run's record says which dataset; a contradicting flag is refused
    conflict = run("test.py", f"--model={finished}", "--dataset=cifar10")
    assert conflict.returncode == 2 and "--dataset=synthetic" in conflict.stderr
    # a model outside any run, on a dataset of other images
    shutil.copy(finished / "model.keras", tmp_path / "outside.keras")
    mismatch = run("test.py", f"--model={tmp_path / 'outside.keras'}", "--dataset=fashion_mnist")
    assert mismatch.returncode == 2 and "(32, 32, 3)" in mismatch.stderr, mismatch.stderr
    assert "Traceback" not in conflict.stderr + mismatch.stderr
    ok = run("test.py", f"--model={finished / 'train_params.mat'}", "--test_subset=100")
    expected = json.loads((finished / "run.json").read_text())["metrics"]["last_accuracy"]
    assert f"Top-1 accuracy: {expected:.2f}%" in ok.stdout, ok.stderr


def test_test_py_refuses_a_data_dir_that_is_not_a_directory(tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(b"")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "test.py"), f"--model={model}",
                             "--dataset=synthetic", f"--data_dir={tmp_path / 'none'}"],
                            capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: --data_dir={tmp_path / 'none'} is not a directory")


def test_a_classifier_is_not_scored_on_label_maps(finished):
    data = dataloader.load("synthetic", test_subset=4)
    maps = np.zeros((4, 32, 32), np.int32)
    label_maps = Dataset("maps", data.test_images, maps, data.test_images, maps,
                         data.num_classes, data.mean, data.std)
    path = str(finished / "model.keras")
    with pytest.raises(UserError, match="label maps"):
        evaluation.confusion_matrix(evaluation.load_logits_fn(path, label_maps, None),
                                    label_maps, 4, path)


def test_report_leaves_out_a_trial_with_a_damaged_log(finished, tmp_path):
    trial = tmp_path / "runs" / "None" / "trial0"
    shutil.copytree(finished, trial)
    (trial / "log.mat").write_bytes((trial / "log.mat").read_bytes()[:100])
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "report.py"),
                             f"--root={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}"],
                            capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert result.returncode != 0 and "No finished trial" in result.stderr
    assert "not counted" in result.stderr and "log.mat is a damaged .mat file" in result.stderr
    assert "Traceback" not in result.stderr
