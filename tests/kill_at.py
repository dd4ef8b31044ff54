"""Run train.py and signal the process at a chosen moment of a run.

    python tests/kill_at.py [--signal=KILL|TERM|STOP] [--after] <file name>[:<n>] -- <train.py flags>

The process sends itself the signal (default SIGKILL: no handler, no
clean-up) the n-th time (default: the first) a file named <file name> is
about to be put in place, i.e. after its temporary was written and before
the rename that would publish it; with --after, just after that rename.
SIGSTOP freezes it there, holding what it holds (its train_dir's lock),
until the test kills it. The write itself is real; only the moment is chosen.
"""

import argparse
import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

separator = sys.argv.index("--")
parser = argparse.ArgumentParser()
parser.add_argument("point")
parser.add_argument("--signal", choices=["KILL", "TERM", "STOP"], default="KILL")
parser.add_argument("--after", action="store_true")
options = parser.parse_args(sys.argv[1:separator])
target, _, occurrence = options.point.partition(":")
remaining = int(occurrence or 1)
replace = os.replace


def replace_and_signal(source, destination, *args, **kwargs):
    global remaining
    if os.path.basename(destination) == target:
        remaining -= 1
    now = remaining == 0 and os.path.basename(destination) == target
    if now and not options.after:
        os.kill(os.getpid(), getattr(signal, f"SIG{options.signal}"))
    result = replace(source, destination, *args, **kwargs)
    if now and options.after:
        os.kill(os.getpid(), getattr(signal, f"SIG{options.signal}"))
    return result


os.replace = replace_and_signal
sys.argv = ["train.py", *sys.argv[separator + 1:]]
from tf_kd.cli.train import run  # noqa: E402

run()
