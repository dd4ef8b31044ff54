"""A full disk during a run: one line naming what could not be written, exit
status 2, the run recorded failed, and `--resume` once there is space ends
as the uninterrupted run. The disk is a real small tmpfs, really filled at a
chosen moment (tests/fill_at.py)."""

import os
import subprocess
import sys

import pytest

from test_run_safety import (  # noqa: F401  (reference, reference_run: fixtures)
    ENV, FLAGS, ROOT, assert_same_outcome, reference, reference_run, tiny)
from tf_kd import run_record, training


@pytest.fixture
def disk(tmp_path):
    """A 4 MB tmpfs (a tiny run needs under 2 MB)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)   # TensorBoard may hold a file


@pytest.mark.parametrize("point, left, failed_at", [
    ("run.json:2", 0, "state/epoch2.weights.h5"),          # not a byte left for the record
    ("run.json:2", 64 * 1024, "state/epoch2.weights.h5"),  # h5py crashed half-way in
    ("model.keras", 0, "saved_model"),                     # the SavedModel export
])
def test_a_full_disk_fails_in_one_line_and_resume_finishes(point, left, failed_at, disk,
                                                           reference):
    train_dir, filler = disk / "run", disk / "filler"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "fill_at.py"),
                             str(filler), str(left), point, "--", f"--train_dir={train_dir}",
                             *FLAGS], capture_output=True, text=True, env=ENV, cwd=ROOT)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert "no space left" in lines[0] and str(train_dir / failed_at) in lines[0], lines[0]
    record = run_record.read(train_dir)
    assert record["state"] == run_record.FAILED, record
    assert record["reason"].startswith(f"no space left on the device writing {train_dir}")
    # the last finished epoch's state is kept, whole
    assert record["epochs_done"] == (3 if point == "model.keras" else 1)
    assert not [n for n in os.listdir(train_dir / "state") if n.startswith(".partial-")]
    filler.unlink()
    training.train(tiny(train_dir, resume=True))
    assert_same_outcome(train_dir, reference)
    assert not [n for n in os.listdir(train_dir) if n.startswith(".partial-")]
