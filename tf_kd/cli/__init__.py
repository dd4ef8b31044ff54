"""The command-line programs: `train` (`train.py`, `tf-kd-train`) and
`evaluate` (`test.py`, `tf-kd-test`), absl flags named as in TF1.

A program's module imports nothing heavy: `run` imports TensorFlow and
defines the program's flags as the program starts, so both modules import
into one process (a library may expose both) and Ctrl-C while the program
starts is reported as any interruption. TensorFlow is imported with its C++
INFO and WARNING lines left out (`TF_CPP_MIN_LOG_LEVEL=2` unless the
environment sets it; errors still show), with oneDNN's CPU kernels on
whatever the CPU (`TF_ENABLE_ONEDNN_OPTS=1` unless the environment sets it)
and without their start-up banner, which that level does not reach;
anything else it prints while it loads is passed on.

What a user can fix is one line on stderr and an exit status, without a
traceback: a bad flag or a stray argument (2, with a pointer to
`--helpfull`), a `UserError` or a full disk (2), a divergence (3), a lost
worker of a multi-worker run (4), an interruption (Ctrl-C, SIGTERM: 130).
Any other error is a bug and keeps its traceback.
"""

import errno
import logging
import os
import signal
import sys
import tempfile

from absl import app, flags

from tf_kd import signals
from tf_kd.errors import Diverged, UserError, WorkerLost

EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_WORKER_LOST, EXIT_INTERRUPTED = 2, 3, 4, 130

# what TensorFlow prints on stderr as it loads, whatever TF_CPP_MIN_LOG_LEVEL says
_BANNERS = ("oneDNN custom operations are on",
            "All log messages before absl::InitializeLog() is called")


def import_tensorflow_quietly():
    """Import TensorFlow as the programs do (above); also for scripts that
    start with it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # oneDNN's CPU kernels, which TensorFlow turns on by itself only on Intel CPUs: on a
    # 2-core AMD EPYC a training step took 0.53-0.99x PyTorch eager's time with them,
    # 0.95-1.29x without (benchmarks/results/torch_compare*.md).
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    stderr = os.dup(2)
    # Ctrl-C waits for the import to end: a KeyboardInterrupt inside TensorFlow's import
    # may be swallowed there or leave it half-initialised, unable to exit.
    with tempfile.TemporaryFile() as captured, signals.deferred():
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(stderr, 2)
            os.close(stderr)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(banner in line for banner in _BANNERS):
                    sys.stderr.write(line)
            sys.stderr.flush()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(function, define_flags, module, usage):
    """Start a program: import TensorFlow, define its flags (`define_flags()`;
    `--help` lists `module`'s and `usage`), parse them (`_parse_flags`) and
    `app.run` `function(argv)` through `main`. An interruption, also while
    the program starts, is one line and exit status 130."""
    try:
        import_tensorflow_quietly()
        define_flags()
        for flag in flags.FLAGS.get_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
        sys.modules["__main__"].__doc__ = usage
        app.run(lambda argv: main(function, argv), flags_parser=_parse_flags)
    except KeyboardInterrupt as error:
        print(f"interrupted ({str(error) or 'Ctrl-C'}).", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


def _parse_flags(argv):
    """absl's parse of `argv`, where a bad flag or an argument that is not a
    flag is one line and exit status 2 (absl prints its usage, exit status 1)."""
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as error:
        _usage_error(argv[0], str(error))
    if len(rest) > 1:
        _usage_error(argv[0], f"unexpected argument {rest[1]!r}: flags are written --name=value")
    return rest


def _usage_error(program, message):
    message = " ".join(message.split()).rstrip(".")
    print(f"error: {message} ({os.path.basename(program)} --helpfull lists the flags).",
          file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def main(function, argv):
    """Run `function(argv)`; SIGTERM counts as an interruption (so a run
    that is stopped records why). TensorFlow's Python INFO lines (e.g. the
    devices a strategy uses) are left out; its warnings still show."""
    signal.signal(signal.SIGTERM, _interrupt)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    try:
        function(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Diverged as error:
        print(f"error: the run diverged: {error} The last good epoch's state is kept; "
              "the run is marked failed.", file=sys.stderr)
        sys.exit(EXIT_DIVERGED)
    except WorkerLost as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_WORKER_LOST)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: no space left on the device writing {error.filename or 'a file'}; "
              "what was written before is intact: free space, then --resume.",
              file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
