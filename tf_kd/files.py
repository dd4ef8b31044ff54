"""Files written whole or not at all: write beside, then rename.

A reader never sees a half-written file: the data go to a temporary name in
the same directory, are flushed to disk, and `os.replace` puts them in
place in one step. Killed at any moment, the target holds either its old
content or its new one; the temporary (`.partial-*`) is left behind at worst
and removed by the next writer of the same target. A full disk is an
`OSError` (ENOSPC) naming the target, however the writer failed.
"""

import contextlib
import errno
import glob
import os
import shutil

PARTIAL = ".partial-"
FULL = (errno.ENOSPC, errno.EDQUOT)    # the errors of a full disk (or quota)


def partial_path(path, tag=""):
    """The temporary name `path` is written under, with `path`'s ending
    kept (Keras chooses the format by it: `.keras`, `.weights.h5`)."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f"{PARTIAL}{os.getpid()}{tag}-{name}")


def _remove_stale(path):
    """Remove temporaries of `path` that earlier writers left behind."""
    directory, name = os.path.split(os.path.abspath(path))
    for stale in glob.glob(os.path.join(glob.escape(directory), f"{PARTIAL}*-{name}")):
        remove(stale)


def remove(path):
    """Remove a file or a directory tree, if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _sync(path):
    """Flush `path` (a file, or every file of a directory) to the disk."""
    paths = ([os.path.join(d, f) for d, _, files in os.walk(path) for f in files]
             if os.path.isdir(path) else [path])
    for name in paths:
        with open(name, "rb+") as f:
            os.fsync(f.fileno())


def _sync_directory(directory):
    """Make a rename in `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def replacing(path):
    """Context giving a temporary path to write `path`'s new content to (a
    file or a directory); on a clean exit it replaces `path`, on an error it
    is removed and `path` is left as it was.

        with replacing("run/model.keras") as partial:
            model.save(partial)
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _remove_stale(path)
    partial = partial_path(path)
    try:
        yield partial
        _sync(partial)
        if os.path.isdir(partial) and os.path.isdir(path):
            # A directory cannot be renamed onto a non-empty one: move the
            # old one aside first (a kill here leaves `path` missing, never
            # half-written).
            old = partial_path(path, tag="-old")
            os.replace(path, old)
            os.replace(partial, path)
            remove(old)
        else:
            os.replace(partial, path)
        _sync_directory(os.path.dirname(os.path.abspath(path)))
    except BaseException as error:
        remove(partial)
        if isinstance(error, OSError) and error.errno in FULL:
            # named by the target (the temporary is gone), in one line
            raise OSError(error.errno, os.strerror(error.errno), path) from None
        raise


def write_bytes(path, data):
    """Write `data` to `path` atomically."""
    with replacing(path) as partial:
        with open(partial, "wb") as f:
            f.write(data)


def write_text(path, text):
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))
