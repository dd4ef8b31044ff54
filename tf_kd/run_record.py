"""A run's record, `train_dir/run.json`: what the run is and where it stands.

It holds the run's configuration, the versions it ran with, the network it
trains (`architecture`: model, scope, width, dataset, classes, image shape),
its `state` and, once finished, its final metrics and its artefacts. The
states:

- `running`: started, not finished (it may also have been killed; its
  `state/` directory lets `--resume` continue from the last finished epoch);
- `failed`: stopped by an error, a divergence or an interruption, `reason`
  says which; `--resume` continues from the last good epoch;
- `finished`: every artefact is in place. The record is written last, so a
  run is finished exactly when its record says so.

The record is written atomically; every reader (`train.py`, `--resume`,
`--teacher`, `test.py`, `autotrain`, `report`) goes by it, never by the mere
presence of a file.
"""

import json
import os
import platform
import time

from tf_kd import files
from tf_kd.errors import UserError

NAME = "run.json"
RUNNING, FAILED, FINISHED = "running", "failed", "finished"
FORMAT = 1


def path(train_dir):
    return os.path.join(train_dir, NAME)


def read(train_dir):
    """The record of `train_dir`, or None if it has none."""
    name = path(train_dir)
    if not os.path.exists(name):
        return None
    try:
        with open(name, encoding="utf-8") as f:
            record = json.load(f)
        if record.get("state") not in (RUNNING, FAILED, FINISHED) or "config" not in record:
            raise ValueError("no valid state or config")
    except (OSError, ValueError) as error:
        raise UserError(f"{name} is not a readable run record ({error}); it was not "
                        "written by this project, or was damaged.") from None
    return record


def write(train_dir, record):
    record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    files.write_text(path(train_dir), json.dumps(record, indent=1) + "\n")


def versions():
    """The versions a run ran with."""
    import keras
    import numpy
    import tensorflow as tf
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__}


def describe(record):
    """One line: the state, and why or how far."""
    if record["state"] == FAILED:
        return f"failed: {record.get('reason', 'no reason recorded').rstrip('.')}"
    if record["state"] == RUNNING:
        return (f"unfinished ({record.get('epochs_done', 0)} of "
                f"{record.get('epochs', '?')} epochs done; running, or killed)")
    return "finished"


def of_file(file_path):
    """`(train_dir, record)` of a run directory or of a file (or SavedModel
    directory) in one; `record` is None where there is no run record."""
    if os.path.isdir(file_path) and os.path.exists(path(file_path)):
        train_dir = file_path
    else:
        train_dir = os.path.dirname(os.path.abspath(file_path))
    return train_dir, read(train_dir)


def finished_artefact(file_path, what):
    """`(path, record)` of a model named by the user (`what`: the flag); a
    run directory stands for its `model.keras`. A file of a run that is not
    finished is refused; a file outside any run (e.g. TF1's `ResNet.mat`)
    has no record."""
    if not os.path.exists(file_path):
        raise UserError(f"{what}={file_path}: no such file or directory.")
    train_dir, record = of_file(file_path)
    if record is not None and record["state"] != FINISHED:
        raise UserError(f"{what}={file_path}: the run in {train_dir} is "
                        f"{describe(record)}; finish it (train.py --resume with its "
                        "flags) or name another run.")
    if os.path.isdir(file_path) and os.path.exists(path(file_path)):
        file_path = os.path.join(file_path, "model.keras")
    return file_path, record
