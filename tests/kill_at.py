"""Run train.py and SIGKILL the process at a chosen moment of a run.

    python tests/kill_at.py <file name>[:<n>] -- <train.py flags>

The process kills itself (SIGKILL: no handler, no clean-up) the n-th time
(default: the first) a file named <file name> is about to be put in place,
i.e. after its temporary was written and before the rename that would
publish it. The write itself is real; only the moment is chosen.
"""

import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

point, separator, *flags = sys.argv[1:]
assert separator == "--"
target, _, occurrence = point.partition(":")
remaining = int(occurrence or 1)
replace = os.replace


def replace_or_die(source, destination, *args, **kwargs):
    global remaining
    if os.path.basename(destination) == target:
        remaining -= 1
        if remaining == 0:
            os.kill(os.getpid(), signal.SIGKILL)
    return replace(source, destination, *args, **kwargs)


os.replace = replace_or_die
sys.argv = ["train.py", *flags]
from tf_kd.cli.train import run  # noqa: E402

run()
