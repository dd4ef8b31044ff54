"""What a `train_dir` holds, and what a new run may do with it.

A run only ever writes, and `--overwrite` only ever removes, the entries in
`ENTRIES` (and the temporaries of `tf_kd.files`). A directory that holds
anything else and no run record is not this project's: it is refused,
`--overwrite` or not. Everything here runs under the directory's lock
(`tf_kd.lock`), which the run holds to its end.
"""

import os

from tf_kd import checkpoint, files, lock, run_record, signals
from tf_kd.config import Config
from tf_kd.errors import UserError

# What `tf_kd.training.train` writes into a train_dir (`train/` and
# `validation/` are TensorBoard's; `.lock` is there while a run holds it).
ENTRIES = (run_record.NAME, checkpoint.DIRECTORY, "log.mat", "train_params.mat",
           "model.keras", "saved_model", "model.tflite", "transfer_set.npz",
           "train", "validation", lock.NAME)

NEW, RESUME, OVERWRITE, FINISHED = "new", "resume", "overwrite", "finished"


def _ours(name):
    return name in ENTRIES or name.startswith(files.PARTIAL)


def plan(config):
    """`(action, record)`: what `config` asks of its `train_dir`, checked
    before anything changes there. `action` is NEW, RESUME, OVERWRITE, or
    FINISHED (`--resume` of a finished run with the same settings: nothing
    to do)."""
    directory = config.train_dir
    if not os.path.exists(directory):
        return NEW, None
    record = run_record.read(directory)
    if record is None:
        foreign = sorted(n for n in os.listdir(directory)
                         if not n.startswith(files.PARTIAL) and n != lock.NAME)
        if foreign:
            raise UserError(
                f"--train_dir={directory} holds files that are not a run of this project "
                f"(e.g. {', '.join(foreign[:3])}) and no {run_record.NAME}: name a new or "
                "empty directory (--overwrite only ever replaces a run of this project).")
        return NEW, None
    if config.overwrite:
        return OVERWRITE, record
    finished = record["state"] == run_record.FINISHED
    if finished and not config.resume:
        raise UserError(f"--train_dir={directory} holds a finished run: choose another "
                        "--train_dir, or pass --overwrite to replace it.")
    if not config.resume:
        raise UserError(f"--train_dir={directory} holds a run that is "
                        f"{run_record.describe(record)}: pass --resume to continue it "
                        "or --overwrite to start again.")
    # a setting added after the run was recorded counts at its default
    given, recorded = config.settings(), {**Config().settings(), **record["config"]}
    differ = [k for k in sorted(set(given) | set(recorded)) if given.get(k) != recorded.get(k)]
    if differ:
        listed = ", ".join(f"--{k}={recorded.get(k)!r} (given {given.get(k)!r})"
                           for k in differ)
        if finished:
            raise UserError(f"--resume: the finished run in {directory} was trained with "
                            f"{listed}: pass its flags, or another --train_dir for these.")
        raise UserError(f"--resume: the run in {directory} was started with {listed}: "
                        "resume with its flags, or pass --overwrite to start again.")
    return (FINISHED if finished else RESUME), record


def clear(directory):
    """Remove what a run wrote into `directory`, its record last (so that a
    kill half-way leaves a run `--overwrite` can still replace); returns the
    entries kept (files that are not the project's)."""
    kept = []
    for name in sorted(os.listdir(directory), key=lambda n: n == run_record.NAME):
        if name == lock.NAME:       # held by the run that clears
            continue
        if _ours(name):
            files.remove(os.path.join(directory, name))
        else:
            kept.append(name)
    return kept


def finish(directory, record):
    """Write the finished `record` and remove the run's state as one step:
    SIGTERM and SIGINT wait until both are done, so a finished run stays
    finished (a kill between them leaves a `state/` that
    `remove_leftover_state` removes)."""
    with signals.deferred():
        run_record.write(directory, record)
        files.remove(os.path.join(directory, checkpoint.DIRECTORY))


def remove_leftover_state(directory):
    """Remove the `state/` a kill left in a finished run; True if there was one."""
    state = os.path.join(directory, checkpoint.DIRECTORY)
    if not os.path.exists(state):
        return False
    files.remove(state)
    return True
