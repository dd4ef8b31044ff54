import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import scipy.io as sio


HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


MIRRORED_KEYS = ["KD-SVD", "Soft_logits"]


def test_two_steps_under_mirrored_strategy():
    """tests/distribute_check.py's check of each method, in one process (its
    two logical CPUs are set as it is imported, before TensorFlow starts)."""
    checks = "; ".join(f"distribute_check.main({key!r})" for key in MIRRORED_KEYS)
    result = subprocess.run(
        [sys.executable, "-c", f"import distribute_check; {checks}"],
        capture_output=True, text=True, cwd=os.path.dirname(HERE),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
             "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE)])})
    assert result.returncode == 0, result.stderr[-3000:]
    for key in MIRRORED_KEYS:
        assert f"OK {key}" in result.stdout, result.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    """The tiny teacher of tests/conftest.py (of this file's width and dataset)."""
    return str(tiny_teacher)


TINY = dict(dataset="synthetic", train_epoch=4, batch_size=32, width=0.125, train_subset=64,
            test_subset=50, verbose=0, exports="")


def test_two_workers_train_as_one_process_of_two_replicas(teacher, tmp_path):
    """MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 end with
    the same weights, those of one process with two replicas on the same
    global batches (`--strategy=mirrored` on two logical CPUs; batch norm
    normalises each replica's half, so a single device differs). The batch
    norm moving statistics are each worker's own. KD-SVD: a distiller with a
    teacher, the student's CE and its clipped gradient, across workers."""
    ports = [free_port(), free_port()]
    config = dict(TINY, Distillation="KD-SVD", teacher=teacher)
    flags = [f"--{k}={v}" for k, v in config.items()]
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                     "task": {"type": "worker", "index": index}}
        workers.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "train.py"), "--strategy=multi_worker",
             f"--train_dir={tmp_path / f'worker{index}'}", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config)}))
    try:
        for worker in workers:
            _, stderr = worker.communicate(timeout=300)
            assert worker.returncode == 0, stderr[-3000:]
    finally:
        for worker in workers:
            worker.kill()
    single = subprocess.run(
        [sys.executable, os.path.join(HERE, "two_cpus.py"), "--strategy=mirrored",
         f"--train_dir={tmp_path / 'single'}", *flags], capture_output=True, text=True,
        cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert single.returncode == 0, single.stderr[-3000:]
    first, second, single = (sio.loadmat(tmp_path / name / "train_params.mat")
                             for name in ("worker0", "worker1", "single"))
    # batch-norm moving statistics are each worker's own (its replicas' batches)
    names = [k for k in single if not k.startswith("__") and "moving_" not in k]
    assert len(names) > 20
    for name in names:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
        np.testing.assert_allclose(first[name], single[name], rtol=1e-4, atol=1e-6,
                                   err_msg=name)
