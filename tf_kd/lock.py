"""One writer per train_dir: an OS advisory lock held for a run's lifetime.

`held(directory)` creates the directory if need be, takes an exclusive
`flock` of its `.lock` file and writes there who holds it (process, host,
since when). A second run on the directory is refused at once, naming the
holder. The kernel releases the lock when its holder ends, however it ends,
so the `.lock` a killed run leaves behind never blocks its `--resume`. On
release the `.lock` is removed, and so is a directory the lock created if
nothing was written into it.

The `.lock` is the one file not written beside and renamed: a rename would
put a new, unlocked file in the locked one's place.
"""

import contextlib
import fcntl
import json
import os
import socket
import time

from tf_kd.errors import UserError

NAME = ".lock"


@contextlib.contextmanager
def held(directory):
    """Hold `directory`'s lock inside the block; a `UserError` if another
    process holds it or the directory cannot be written."""
    path = os.path.join(directory, NAME)
    missing = _missing(directory)
    try:
        descriptor = _lock(directory, path)
    except OSError as error:
        raise UserError(_unwritable(directory, error)) from None
    if descriptor is None:
        raise UserError(f"--train_dir={directory} is in use by another run ({_holder(path)}): "
                        "wait for it to end, or stop it.")
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)     # still locked: a newcomer that opened it tries again
        os.close(descriptor)
        for created in missing:
            try:
                os.rmdir(created)      # only if empty
            except OSError:
                break


def _missing(directory):
    """The directories that holding `directory`'s lock creates, deepest first."""
    missing, path = [], os.path.abspath(directory)
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _lock(directory, path):
    """A descriptor of `path` holding its exclusive lock, or None if another
    process holds it."""
    while True:
        os.makedirs(directory, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except FileNotFoundError:     # a run that just gave up removed the directory
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if isinstance(error, BlockingIOError):
                return None
            raise
        try:
            if os.path.samestat(os.fstat(descriptor), os.stat(path)):
                return descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)          # removed by the holder that released it: again


def _holder(path):
    """Who holds the lock of `path`, as the holder wrote it."""
    for _ in range(20):     # it writes just after it takes the lock, over a killed run's
        try:
            with open(path, encoding="utf-8") as f:
                holder = json.load(f)
            if holder["host"] != socket.gethostname() or _alive(holder["pid"]):
                return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.05)
    return "a process its .lock does not name"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # another user's
        pass
    return True


def _unwritable(directory, error):
    """The one-line error for a `directory` that cannot be created or written."""
    path = os.path.abspath(directory)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        return (f"--train_dir={directory}: {path} is a file, not a directory: name a "
                "directory.")
    return (f"--train_dir={directory} cannot be written ({error.strerror}): name a "
            "writable directory.")
