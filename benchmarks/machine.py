"""What a benchmark ran on: CPU, cores, TensorFlow, Python, threads, devices."""

import os
import platform
import time

import tensorflow as tf


def describe():
    """The machine and software, as `{name: value}` for a report's header."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threading = tf.config.threading
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "intra_op_threads": threading.get_intra_op_parallelism_threads() or "default (all cores)",
        "inter_op_threads": threading.get_inter_op_parallelism_threads() or "default (all cores)",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "devices": ", ".join(d.name for d in tf.config.list_logical_devices()),
    }
