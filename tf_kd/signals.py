"""SIGTERM and SIGINT held back while a block runs."""

import contextlib
import signal
import threading


@contextlib.contextmanager
def deferred():
    """SIGTERM and SIGINT received inside the block are delivered after it
    (outside the main thread, where Python sets no handler, it defers nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum))
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in received:
            signal.raise_signal(signum)
