"""The command-line programs: `train` (`train.py`, `tf-kd-train`) and
`evaluate` (`test.py`, `tf-kd-test`), absl flags named as in TF1.

`main` runs a program's function and turns the errors a user can fix
(`UserError`, `Diverged`, a full disk, an interruption) into one line on stderr and an
exit status, without a traceback; any other error is a bug and keeps its
traceback.

Importing this package imports TensorFlow with its C++ INFO and WARNING
lines left out (`TF_CPP_MIN_LOG_LEVEL=2` unless the environment sets it;
errors still show) and without the oneDNN start-up banner, which that level
does not reach; anything else TensorFlow prints while it loads is passed on.
"""

import errno
import logging
import os
import signal
import sys
import tempfile

# what TensorFlow prints on stderr as it loads, whatever TF_CPP_MIN_LOG_LEVEL says
_BANNERS = ("oneDNN custom operations are on",
            "All log messages before absl::InitializeLog() is called")


def _import_tensorflow_quietly():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    stderr = os.dup(2)
    with tempfile.TemporaryFile() as captured:
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


_import_tensorflow_quietly()

from absl import app, flags  # noqa: E402

from tf_kd.errors import Diverged, UserError  # noqa: E402

EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(function, module, usage):
    """`app.run` of `function` through `main`, with `--help` listing
    `module`'s flags (absl lists only the main module's) and `usage`."""
    for flag in flags.FLAGS.get_flags_for_module(module):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    sys.modules["__main__"].__doc__ = usage
    app.run(lambda argv: main(function, argv))


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
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: no space left on the device writing {error.filename or 'a file'}; "
              "what was written before is intact: free space, then --resume.",
              file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt as error:
        print(f"interrupted ({error or 'Ctrl-C'}).", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
