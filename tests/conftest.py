import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The files that take a minute or more (they start many processes), run first:
# the test processes of scripts/run_tests.sh take whole files in collection
# order, so the long ones do not end up last, alone on one core.
SLOW_FIRST = ("test_readme.py", "test_trials.py", "test_benchmarks.py", "test_distribute.py",
              "test_package.py", "test_run_safety.py", "test_training.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)
    items.sort(key=rank)   # stable: the order within a file is kept
