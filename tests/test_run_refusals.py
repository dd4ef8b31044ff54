"""A run never destroys or reports what it should not: --overwrite replaces
only a run of this project, after checking everything; bad flags, damaged or
foreign teachers, transfer sets and records are one clear error before
anything is written, and so are the programs' command-line errors. The files
are real: truncated, changed and foreign ones. (Kills and resume:
tests/test_run_safety.py.)"""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io as sio

import dataloader
from dataloader.dataset import Dataset
from test_run_safety import ENV, FLAGS, ROOT, tiny
from tf_kd import evaluation, run_record, training
from tf_kd.errors import UserError


def test_a_teacher_with_non_finite_weights_is_refused(tiny_teacher, tmp_path):
    weights = sio.loadmat(tiny_teacher / "train_params.mat")
    weights["Teacher/conv0/weights"][0, 0, 0, 0] = np.nan
    sio.savemat(tmp_path / "nan.mat", weights)
    with pytest.raises(UserError, match="nan.mat holds non-finite weights"):
        training.train(tiny(tmp_path / "student", Distillation="Soft_logits",
                            teacher=str(tmp_path / "nan.mat")))
    assert not os.path.exists(tmp_path / "student")


# -- --overwrite and the train_dir -----------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished one-epoch run, trained once for the module."""
    train_dir = tmp_path_factory.mktemp("finished") / "run"
    training.train(tiny(train_dir, train_epoch=1))
    return train_dir


@pytest.fixture
def finished(finished_run, tmp_path):
    """A copy of `finished_run`, this test's to change."""
    train_dir = tmp_path / "finished"
    shutil.copytree(finished_run, train_dir)
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


def test_a_teacher_whose_model_differs_from_its_record_is_refused(tiny_teacher, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher)
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


def test_a_transfer_set_that_does_not_fit_the_teacher_is_refused(tiny_teacher, tmp_path):
    dfkd = dict(Distillation="DFKD", teacher=str(tiny_teacher), transfer_size=64, dfkd_steps=1)
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
