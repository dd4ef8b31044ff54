"""scripts/autotrain.py and scripts/report.py on a tiny configuration."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io as sio

from tf_kd import run_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset=synthetic", "--train_epoch=1", "--batch_size=32", "--width=0.125",
        "--train_subset=64", "--test_subset=50", "--verbose=0"]


def script(name, *args, status=0):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", name), *args],
                            capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == status, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_trials_and_report(tmp_path):
    root = str(tmp_path / "runs")
    # flags for a teacher are left out of the runs that take none
    script("autotrain.py", "--methods=None,Teacher", "--trials=2", f"--root={root}", "--", *TINY,
           "--teacher_precision=mixed_bfloat16")
    for method in ["None", "Teacher"]:
        for i in range(2):
            assert run_record.read(os.path.join(root, method, f"trial{i}"))["state"] == "finished"
    again = script("autotrain.py", "--methods=None", "--trials=2", f"--root={root}", "--", *TINY)
    assert again.count("finished, skipped") == 2
    # with Teacher among the methods, the students distil from its first trial
    distilled = script("autotrain.py", "--methods=Soft_logits,Teacher", "--trials=1",
                       f"--root={root}", "--", *TINY, "--teacher_precision=mixed_bfloat16")
    teacher = os.path.join(root, "Teacher", "trial0")
    assert distilled.index("Teacher/trial0: finished, skipped") < distilled.index(
        f"--Distillation=Soft_logits --teacher={teacher}")
    distilled_record = run_record.read(os.path.join(root, "Soft_logits", "trial0"))
    assert distilled_record["state"] == "finished"
    assert distilled_record["config"]["teacher_precision"] == "mixed_bfloat16"

    # a third trial diverges: autotrain goes on, then lists it and fails
    diverged = script("autotrain.py", "--methods=None", "--trials=3", f"--root={root}", "--",
                      *TINY, "--learning_rate=1e6", status=1)
    assert diverged.count("finished, skipped") == 2
    assert "Failed trials" in diverged and os.path.join("None", "trial2") in diverged

    out = str(tmp_path / "report")
    script("report.py", f"--root={root}", f"--out={out}", "--tf1", "--baseline=None")
    with open(os.path.join(out, "report.csv")) as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    last = [float(np.ravel(sio.loadmat(os.path.join(root, "None", f"trial{i}", "log.mat"))
                           ["validation_acc"])[-1]) for i in range(2)]
    assert float(rows["None"]["last_mean"]) == pytest.approx(np.mean(last))
    assert float(rows["None"]["last_std"]) == pytest.approx(np.std(last))
    assert float(rows["None"]["tf1_last"]) == 71.76
    assert float(rows["Teacher"]["best_diff"]) == pytest.approx(
        float(rows["Teacher"]["best_mean"]) - 79.08)
    assert float(rows["Teacher"]["last_gain"]) == pytest.approx(
        float(rows["Teacher"]["last_mean"]) - float(rows["None"]["last_mean"]))
    assert float(rows["None"]["best_gain"]) == 0
    assert os.path.getsize(os.path.join(out, "curves.png")) > 0
    assert os.listdir(os.path.join(out, "tensorboard", "None"))
    report = open(os.path.join(out, "report.md")).read()
    assert "| None | 2 |" in report          # the diverged trial is not averaged
    assert "trial2: failed: diverged at epoch 1" in report
