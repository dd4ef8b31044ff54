"""scripts/autotrain.py and scripts/report.py on a tiny configuration."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.io as sio

from tf_kd import run_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset=synthetic", "--train_epoch=1", "--batch_size=32", "--width=0.125",
        "--train_subset=64", "--test_subset=50", "--verbose=0", "--exports="]


ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def command(name, *args):
    return [sys.executable, os.path.join(ROOT, "scripts", name), *args]


def script(name, *args, status=0):
    result = subprocess.run(command(name, *args), capture_output=True, text=True, cwd=ROOT,
                            env=ENV)
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
    # trials trained with other flags are refused, naming them, and left as they are; a
    # third trial diverges: autotrain goes on, then lists the failures
    records = [run_record.read(os.path.join(root, "None", f"trial{i}")) for i in range(2)]
    diverged = script("autotrain.py", "--methods=None", "--trials=3", f"--root={root}", "--",
                      *TINY, "--learning_rate=1e6", status=1)
    assert diverged.count("trained with --learning_rate=0.1 (given 1000000.0)") == 2
    assert records == [run_record.read(os.path.join(root, "None", f"trial{i}"))
                       for i in range(2)]
    assert "Failed trials" in diverged and os.path.join("None", "trial2") in diverged
    # with Teacher among the methods, the students distil from its first trial (a
    # finished trial is left as it is)
    distilled = script("autotrain.py", "--methods=Soft_logits,Teacher", "--trials=1",
                       f"--root={root}", "--", *TINY, "--teacher_precision=mixed_bfloat16")
    teacher = os.path.join(root, "Teacher", "trial0")
    assert distilled.index("Teacher/trial0: already finished") < distilled.index(
        f"--Distillation=Soft_logits --teacher={teacher}")
    distilled_record = run_record.read(os.path.join(root, "Soft_logits", "trial0"))
    assert distilled_record["state"] == "finished"
    assert distilled_record["config"]["teacher_precision"] == "mixed_bfloat16"

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
    assert report.startswith("Warning: 5 trial(s) were not trained in the TF1 table's setting")
    assert "--dataset=synthetic" in report.splitlines()[0]
    assert "| None | 2 |" in report          # the diverged trial is not averaged
    assert "trial2: failed: diverged at epoch 1" in report


def test_autotrain_passes_sigterm_on_to_its_trial_and_waits_for_it(tmp_path):
    root, flags = tmp_path / "runs", [*TINY, "--train_epoch=4"]
    trial = root / "None" / "trial0"
    autotrain = subprocess.Popen(command("autotrain.py", "--methods=None", "--trials=1",
                                         f"--root={root}", "--", *flags),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=ROOT, env=ENV)
    deadline = time.time() + 120
    while not (trial / "state" / "epoch1.json").exists() and time.time() < deadline:
        time.sleep(0.005)
    child = json.loads((trial / ".lock").read_text())["pid"]     # train.py, training
    autotrain.send_signal(signal.SIGTERM)
    _, stderr = autotrain.communicate(timeout=120)
    try:
        assert autotrain.returncode == 130 and "interrupted (SIGTERM)" in stderr, stderr
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)                  # ended, not left training on
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    record = run_record.read(trial)
    assert record["state"] == "failed" and "SIGTERM" in record["reason"]
    resumed = script("autotrain.py", "--methods=None", "--trials=1", f"--root={root}", "--",
                     *flags)
    assert f"Resuming {trial} after epoch" in resumed
    assert run_record.read(trial)["state"] == "finished"
