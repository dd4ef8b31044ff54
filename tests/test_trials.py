"""scripts/autotrain.py and scripts/report.py on a tiny configuration."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io as sio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset=synthetic", "--train_epoch=1", "--batch_size=32", "--width=0.125",
        "--train_subset=64", "--test_subset=50", "--verbose=0"]


def script(name, *args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", name), *args],
                            capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_trials_and_report(tmp_path):
    root = str(tmp_path / "runs")
    script("autotrain.py", "--methods=None,Teacher", "--trials=2", f"--root={root}", "--", *TINY)
    for method in ["None", "Teacher"]:
        for i in range(2):
            assert os.path.exists(os.path.join(root, method, f"trial{i}", "train_params.mat"))
    again = script("autotrain.py", "--methods=None", "--trials=2", f"--root={root}", "--", *TINY)
    assert again.count("finished, skipped") == 2
    # with Teacher among the methods, the students distil from its first trial
    distilled = script("autotrain.py", "--methods=Soft_logits,Teacher", "--trials=1",
                       f"--root={root}", "--", *TINY)
    teacher = os.path.join(root, "Teacher", "trial0", "model.keras")
    assert distilled.index("Teacher/trial0: finished, skipped") < distilled.index(
        f"--Distillation=Soft_logits --teacher={teacher}")
    assert os.path.exists(os.path.join(root, "Soft_logits", "trial0", "train_params.mat"))

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
    assert "| None | 2 |" in open(os.path.join(out, "report.md")).read()
