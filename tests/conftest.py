import os
import re
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# as train.py and test.py import TensorFlow (tf_kd/cli/__init__.py), so that a run in a
# test process computes what the same run of a program does
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The files that take a minute or more (they start many processes), run first:
# the test processes of scripts/run_tests.sh take whole files in collection
# order, so the long ones do not end up last, alone on one core.
SLOW_FIRST = ("test_readme.py", "test_trials.py", "test_benchmarks.py", "test_distribute.py",
              "test_package.py", "test_run_safety.py", "test_training.py")


def pytest_configure(config):
    # pytest-xdist (3.x) hands the files out largest first by their number of
    # tests unless told not to; the order above is by time, not by count.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)
    items.sort(key=rank)   # stable: the order within a file is kept


# The tiny finished teacher run that several files distil from (read it, never change
# it: a test that damages a teacher copies it first). Trained once per test process.
TINY_TEACHER = dict(dataset="synthetic", main_scope="Teacher", train_epoch=1, batch_size=32,
                    val_batch_size=50, width=0.125, train_subset=128, test_subset=100,
                    verbose=0)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory):
    """A finished teacher run (`TINY_TEACHER`, validated on the first 100
    test images): its directory, a `pathlib.Path`."""
    from tf_kd import training

    train_dir = tmp_path_factory.mktemp("tiny_teacher") / "run"
    training.train(training.Config(train_dir=str(train_dir), **TINY_TEACHER))
    return train_dir


@pytest.fixture
def no_tensorflow_errors(capfd):
    """Fails the test if TensorFlow's C++ code logged an error line
    (`E<mmdd> ...`, shown whatever `TF_CPP_MIN_LOG_LEVEL`) while it ran: a
    graph rewrite that failed, a kernel that was refused (docs/training.md,
    oneDNN)."""
    yield
    captured = capfd.readouterr()
    errors = [line for line in captured.err.splitlines() if re.match(r"E\d{4} ", line)]
    assert not errors, errors
