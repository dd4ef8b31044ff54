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
  run is finished exactly when its record says so. It holds the SHA-256 of
  `model.keras` (`sha256`); a model read through the record (`--teacher`)
  must match it.

The record is written atomically; every reader (`train.py`, `--resume`,
`--teacher`, `test.py`, `autotrain`, `report`) goes by it, never by the mere
presence of a file.
"""

import hashlib
import json
import os
import platform
import time

from tf_kd import files
from tf_kd.errors import UserError

NAME = "run.json"
RUNNING, FAILED, FINISHED = "running", "failed", "finished"
FORMAT = 1
# Room kept for the record of a failure (a temporary of `tf_kd.files` by its
# name: `--overwrite` removes it, a new run does not count it as a file).
RESERVE, RESERVE_BYTES = files.PARTIAL + "reserve", 64 * 1024


def path(train_dir):
    return os.path.join(train_dir, NAME)


def read(train_dir):
    """The record of `train_dir`, or None if it has none; a record that is
    not one, or lacks what its readers use, is a `UserError` naming it."""
    name = path(train_dir)
    if not os.path.exists(name):
        return None
    try:
        with open(name, encoding="utf-8") as f:
            record = json.load(f)
        _check(record)
    except (OSError, ValueError) as error:
        raise UserError(f"{name} is not a readable run record ({error}); it was not "
                        "written by this project, or was damaged.") from None
    return record


# What the readers use (name: JSON type): in any record, where present, and
# what a finished record must hold.
_NUMBER = (int, float)
_TYPES = {dict: "an object", list: "an array", str: "a string", int: "an integer",
          _NUMBER: "a number"}
_FIELDS = {"config": dict, "architecture": dict, "epochs": int, "epochs_done": int,
           "reason": str, "metrics": dict, "history": dict, "artefacts": list}
_FINISHED = ("architecture", "metrics", "history", "artefacts", "epochs")
_ARCHITECTURE = {"model_name": str, "main_scope": str, "width": _NUMBER, "dataset": str,
                 "num_classes": int, "image_shape": list}
_CONFIG = {"dataset": str, "model_name": str, "main_scope": str, "width": _NUMBER,
           "test_subset": int}
_METRICS = {"last_accuracy": _NUMBER, "best_accuracy": _NUMBER}


def _check(record):
    """Raise `ValueError` naming the first thing in `record` a reader could not use."""
    if not isinstance(record, dict):
        raise ValueError(f"{json.dumps(record)[:40]} is not a JSON object")
    if record.get("state") not in (RUNNING, FAILED, FINISHED):
        raise ValueError(f"state {json.dumps(record.get('state'))[:40]} is not "
                         f"{RUNNING}, {FAILED} or {FINISHED}")
    finished = record["state"] == FINISHED
    _check_fields(record, _FIELDS, ("config", *(_FINISHED if finished else ())))
    if finished:
        for field, fields in (("config", _CONFIG), ("architecture", _ARCHITECTURE),
                              ("metrics", _METRICS)):
            _check_fields(record[field], fields, fields, f"{field}.")


def _check_fields(mapping, fields, required, prefix=""):
    for name, kind in fields.items():
        if name not in mapping:
            if name in required:
                raise ValueError(f"no {prefix}{name}")
        elif not isinstance(mapping[name], kind) or isinstance(mapping[name], bool):
            raise ValueError(f"{prefix}{name} is {json.dumps(mapping[name])[:40]}, "
                             f"not {_TYPES[kind]}")


def write(train_dir, record):
    """Write `record` atomically. While the run is unfinished a small file
    (`RESERVE`) holds room beside it; writing the record `failed` frees it
    first, so that even a full disk can record why the run stopped. A
    finished run's record removes it."""
    record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    reserve = os.path.join(train_dir, RESERVE)
    if record["state"] == RUNNING and not os.path.exists(reserve):
        files.write_bytes(reserve, bytes(RESERVE_BYTES))
    elif record["state"] == FAILED:
        files.remove(reserve)
    files.write_text(path(train_dir), json.dumps(record, indent=1) + "\n")
    if record["state"] == FINISHED:
        files.remove(reserve)


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
    expected = (record or {}).get("sha256", {}).get(os.path.basename(file_path))
    if expected is not None and os.path.isfile(file_path) and sha256(file_path) != expected:
        raise UserError(f"{what}={file_path}: the file is not the one its run wrote (its "
                        f"SHA-256 differs from the one {path(train_dir)} records); it was "
                        "changed or damaged: restore it, or train the run again.")
    return file_path, record


def sha256(file_path):
    """The SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(file_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
