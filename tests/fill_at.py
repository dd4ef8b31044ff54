"""Run train.py and fill its filesystem at a chosen moment of a run.

    python tests/fill_at.py <filler path> <bytes left> <file name>[:<n>] -- <train.py flags>

Right after a file named <file name> is put in place for the n-th time
(default: the first), the process writes <filler path> until the
filesystem has not one byte left, then gives <bytes left> back; the writes
after that meet a real full disk. Only the moment is chosen.
"""

import errno
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

filler, left, point, separator, *flags = sys.argv[1:]
assert separator == "--"
target, _, occurrence = point.partition(":")
remaining = int(occurrence or 1)
replace = os.replace


def fill():
    """Write the filler until not one byte more fits; give `left` bytes back."""
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(descriptor, bytes(size))
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
        os.ftruncate(descriptor, os.fstat(descriptor).st_size - int(left))
    finally:
        os.close(descriptor)


def replace_then_fill(source, destination, *args, **kwargs):
    global remaining
    result = replace(source, destination, *args, **kwargs)
    if os.path.basename(destination) == target:
        remaining -= 1
        if remaining == 0:
            fill()
    return result


os.replace = replace_then_fill
sys.argv = ["train.py", *flags]
from tf_kd.cli.train import run  # noqa: E402

run()
