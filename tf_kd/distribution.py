"""Where a run's steps execute: one device, the local devices, or several
machines, through `tf.distribute` (`--strategy`).

- `default`: TensorFlow's default strategy (one device);
- `mirrored`: `MirroredStrategy` over the local GPUs (the logical CPUs
  where there is none);
- `multi_worker`: `MultiWorkerMirroredStrategy` across the machines that
  the standard `TF_CONFIG` environment variable lists (every worker runs
  the same command, each with its own `--train_dir`).

`--batch_size` is the global batch: Keras splits each batch over the
replicas, and the distillers sum the replicas' gradients before TF1's
clipping (`tf_kd.distillers.base`). Batch norm normalises each replica's
share of the batch with its own statistics, as data-parallel training does
(TF1's multi-GPU runs too): a run on N replicas equals a run on N replicas,
not one on a single device.

A worker that stops answering (killed, its machine lost) stops the others
within TensorFlow's heartbeat timeout (about 10 s): `workers_watched` turns
the error they meet into one `WorkerLost` line.
"""

import contextlib
import json
import os

import tensorflow as tf

from tf_kd.errors import UserError, WorkerLost

STRATEGIES = ("default", "mirrored", "multi_worker")


def make(name):
    """The `tf.distribute.Strategy` called `name`."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":     # the GPUs; without any, every logical CPU
        devices = (tf.config.list_logical_devices("GPU")
                   or tf.config.list_logical_devices("CPU"))
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        try:
            cluster = json.loads(os.environ["TF_CONFIG"])
            cluster["cluster"]["worker"], cluster["task"]["index"]
        except (KeyError, TypeError, ValueError):
            raise UserError("--strategy=multi_worker needs the TF_CONFIG environment "
                            'variable, e.g. {"cluster": {"worker": ["host1:port", '
                            '"host2:port"]}, "task": {"type": "worker", "index": 0}}, '
                            "set on every worker.") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"--strategy={name}: valid: {', '.join(STRATEGIES)}.")


@contextlib.contextmanager
def workers_watched(name):
    """Inside the block, a `multi_worker` run's `UnavailableError` (a peer
    stopped answering) is a `WorkerLost` saying how to go on."""
    try:
        yield
    except tf.errors.UnavailableError as error:
        if name != "multi_worker":
            raise
        raise WorkerLost(f"--strategy=multi_worker: a worker stopped answering (killed, or "
                         f"its machine lost; {type(error).__name__}), so this one stopped: its "
                         "run is marked failed, its last finished epoch kept. Start every "
                         "worker again with the same flags and --resume.") from None
