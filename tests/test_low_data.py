"""The low-data benchmark (`benchmarks/low_data.py`): its paired statistics
against an independent computation, and the script on a tiny configuration
of real Fashion-MNIST files (that it runs and reports what its runs
recorded; no timing or accuracy is asserted)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import low_data  # noqa: E402
from tf_kd import run_record, training  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TINY = ["--width=0.125", "--train_subset=200", "--test_subset=100", "--batch_size=16",
        "--train_epoch=1", "--val_batch_size=100"]


def test_paired_gain_and_pooled_spread():
    student = {0: 60.0, 1: 64.0, 2: 62.0, 3: 70.0}
    method = {0: 80.0, 1: 81.0, 2: 85.0}          # seed 3 unfinished: not paired
    row = low_data.compare(method, student)
    mine, base = np.array([80.0, 81.0, 85.0]), np.array([60.0, 64.0, 62.0])
    assert row["seeds"] == [0, 1, 2] and row["paired"] == 3
    assert row["mean"] == pytest.approx(82.0)
    assert row["std"] == pytest.approx(np.sqrt(((mine - 82) ** 2).sum() / 2))
    differences = mine - base
    assert row["gain"] == pytest.approx(differences.mean())
    assert row["gain_std"] == pytest.approx(np.sqrt(
        ((differences - differences.mean()) ** 2).sum() / 2))
    pooled = np.sqrt((np.var(mine, ddof=1) + np.var(base, ddof=1)) / 2)
    assert row["gain_over_pooled_std"] == pytest.approx(differences.mean() / pooled)
    one = low_data.compare({0: 80.0}, student)                     # one pair: no spread
    assert one["gain"] == pytest.approx(20.0) and one["std"] is None and "gain_std" not in one


def test_the_benchmark_reports_what_its_runs_recorded(tmp_path):
    teacher = tmp_path / "teacher"
    training.train(training.Config(
        train_dir=str(teacher), dataset="fashion_mnist", main_scope="Teacher", width=0.125,
        train_subset=200, test_subset=100, batch_size=16, train_epoch=1, verbose=0))
    root, out = tmp_path / "runs", tmp_path / "out"
    args = ["--methods=Soft_logits", "--budgets=2", "--seeds=2", f"--teacher={teacher}",
            f"--root={root}", f"--out={out}", "--jobs=2", "--", *TINY]
    result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "low_data.py"),
                             *args], capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    for method in ("None", "Soft_logits"):       # two at once, each with its own log
        log = root / "labels2" / f"{method}.log"
        assert f"{method}: training (its output: {log})" in result.stdout
        assert f"{method}: done" in result.stdout
        assert "Final validation accuracy" in log.read_text()
    recorded = {}
    for method in ("None", "Soft_logits"):
        for seed in (0, 1):
            record = run_record.read(root / "labels2" / method / f"trial{seed}")
            assert record["config"]["labels_per_class"] == 2
            assert record["config"]["seed"] == seed
            assert record["labels"]["unlabeled"] == (0 if method == "None" else 180)
            recorded.setdefault(method, {})[seed] = record["metrics"]["last_accuracy"]
    results = json.loads((out / "results.json").read_text())
    assert results["accuracy"]["2"] == {m: {str(s): a for s, a in v.items()}
                                        for m, v in recorded.items()}
    gain = np.mean([recorded["Soft_logits"][s] - recorded["None"][s] for s in (0, 1)])
    assert results["summary"]["2"]["Soft_logits"]["gain"] == pytest.approx(gain)
    row = next(line for line in (out / "report.md").read_text().splitlines()
               if "| Soft_logits |" in line)
    assert f"{gain:+.2f} ±" in row and "| 2/2 |" in row
    assert (out / "low_data.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a teacher whose model was changed is refused before any run starts
    (teacher / "model.keras").write_bytes(b"changed")
    refused = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "low_data.py"),
                              *args[:4], f"--root={tmp_path / 'other'}", f"--out={out}"],
                             capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert refused.returncode == 2 and "not the one its run wrote" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "other").exists()
