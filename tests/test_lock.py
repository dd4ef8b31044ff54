"""One writer per train_dir, and the two ends of a run: a second writer is
refused naming the first, a killed run's lock blocks nothing, a train_dir
that cannot be written is one line before anything is written, and a signal
at the end leaves a finished run finished. The faults are real: a second
process, SIGSTOP, SIGKILL, SIGTERM, a read-only filesystem."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tf_kd import run_record, training
from tf_kd.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TINY = dict(dataset="synthetic", train_epoch=1, batch_size=32, val_batch_size=50,
            width=0.125, train_subset=64, test_subset=50, verbose=0, exports="")
FLAGS = [f"--{k}={v}" for k, v in TINY.items()]


def tiny(train_dir, **overrides):
    return training.Config(**{"train_dir": str(train_dir), **TINY, **overrides})


def train_py(*args, env=ENV):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)


def signalled(train_dir, point, *options):
    """train.py signalling itself at `point` (tests/kill_at.py)."""
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "kill_at.py"),
                             *options, point, "--", f"--train_dir={train_dir}", *FLAGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=ROOT)


def error_line(stderr):
    assert "Traceback" not in stderr, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error: ")]
    return line


# -- One writer per train_dir ------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_first_and_a_killed_ones_lock_is_not(tmp_path):
    train_dir = tmp_path / "run"
    first = signalled(train_dir, "run.json", "--signal=STOP")   # before its first record
    _, status = os.waitpid(first.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), first.stderr.read()[-2000:]
    try:
        second = train_py(f"--train_dir={train_dir}", *FLAGS)     # a new run racing it
        _, stderr = second.communicate(timeout=120)
        assert second.returncode == 2
        assert f"in use by another run (pid {first.pid} on {socket.gethostname()}" in (
            error_line(stderr))
        for other in (dict(overwrite=True), dict(resume=True)):
            with pytest.raises(UserError, match=rf"in use by another run \(pid {first.pid} "):
                training.train(tiny(train_dir, **other))
        assert run_record.read(train_dir) is None        # neither wrote anything
    finally:
        first.kill()
        first.communicate()
    assert training.train(tiny(train_dir, resume=True)).record["state"] == run_record.FINISHED
    assert not (train_dir / ".lock").exists()


def test_two_workers_on_one_train_dir_are_refused(tmp_path):
    """Each multi-worker worker needs its own --train_dir: the second is refused."""
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    workers = [train_py("--strategy=multi_worker", f"--train_dir={tmp_path / 'run'}", *FLAGS,
                        env={**ENV, "TF_CONFIG": json.dumps({
                            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                            "task": {"type": "worker", "index": index}})})
               for index in range(2)]
    try:
        deadline = time.time() + 120
        while all(w.poll() is None for w in workers) and time.time() < deadline:
            time.sleep(0.05)
        refused, holder = sorted(workers, key=lambda w: w.returncode is None)
        assert refused.returncode == 2
        assert f"(pid {holder.pid} on" in error_line(refused.communicate()[1])
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate()


# -- A train_dir that cannot be written ------------------------------------------------

def test_a_train_dir_under_a_file_is_one_line_before_anything_is_written(tmp_path):
    (tmp_path / "notes").write_text("mine")
    process = train_py(f"--train_dir={tmp_path / 'notes' / 'run'}", *FLAGS)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert f"{tmp_path / 'notes'} is a file, not a directory" in error_line(stderr)
    with pytest.raises(UserError, match="notes is a file, not a directory"):
        training.train(tiny(tmp_path / "notes"))
    assert os.listdir(tmp_path) == ["notes"] and (tmp_path / "notes").read_text() == "mine"


def test_a_read_only_train_dir_is_one_line(tmp_path):
    disk = tmp_path / "read_only"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("mounting a read-only filesystem needs root")
    try:
        for train_dir in (disk, disk / "run"):
            with pytest.raises(UserError, match=rf"--train_dir={train_dir} cannot be written "
                                                r"\(Read-only file system\)"):
                training.train(tiny(train_dir))
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# -- Signals at the end of a run ---------------------------------------------------------

FINISHED_RECORD = "run.json:3"     # one at the start, one after the only epoch, then this


def test_sigterm_after_the_finished_record_leaves_the_run_finished(tmp_path):
    train_dir = tmp_path / "run"
    process = signalled(train_dir, FINISHED_RECORD, "--signal=TERM", "--after")
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    assert run_record.read(train_dir)["state"] == run_record.FINISHED
    assert not (train_dir / "state").exists()


def test_a_state_a_kill_left_in_a_finished_run_goes_at_the_next_resume(tmp_path, capsys):
    train_dir = tmp_path / "run"
    process = signalled(train_dir, FINISHED_RECORD, "--after")
    process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL
    assert run_record.read(train_dir)["state"] == run_record.FINISHED
    assert (train_dir / "state").exists()
    training.train(tiny(train_dir, resume=True))
    assert "removed the state/ that a kill left" in capsys.readouterr().out
    assert not (train_dir / "state").exists()
    assert run_record.read(train_dir)["state"] == run_record.FINISHED
