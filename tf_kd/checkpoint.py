"""The state of an unfinished run, saved after every epoch (`train_dir/state/`).

After epoch `n` (counting from 1) `EpochCheckpoint` writes
`epoch{n}.weights.h5` (every weight of the distiller and the optimizer's
state) and then `epoch{n}.json` (the per-epoch metrics so far), each
atomically; the `.json` file commits the pair. Older pairs are removed only
after the new one is complete, so a kill at any moment leaves the last
finished epoch's state intact. `latest` finds it; with the epoch-indexed
training pipeline (`dataloader.train_pipeline(first_epoch=n)`) a run resumed
from it is the run it continues.
"""

import glob
import json
import os
import re

import keras

from tf_kd import files
from tf_kd.errors import UserError

DIRECTORY = "state"
_PATTERN = re.compile(r"epoch(\d+)\.json$")


def _paths(directory, epochs):
    stem = os.path.join(directory, f"epoch{epochs}")
    return stem + ".weights.h5", stem + ".json"


def saved_epochs(directory):
    """The epoch counts with a complete state in `directory`, newest first."""
    names = glob.glob(os.path.join(glob.escape(directory), "epoch*.json"))
    counts = [int(m.group(1)) for m in map(_PATTERN.search, names) if m]
    return sorted((n for n in counts if os.path.exists(_paths(directory, n)[0])),
                  reverse=True)


def latest(directory):
    """`(epochs, history, weights_path)` of the newest complete state in
    `directory`, or None. `history` maps each metric to its per-epoch values."""
    epochs = saved_epochs(directory)
    if not epochs:
        return None
    weights, record = _paths(directory, epochs[0])
    try:
        with open(record, encoding="utf-8") as f:
            history = json.load(f)["history"]
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{record} is damaged ({error}); start the run again with "
                        "--overwrite.") from None
    return epochs[0], history, weights


def restore(model, directory):
    """Load the newest state of `directory` into `model` (compiled, its
    optimizer built); returns `(epochs, history)`, `(0, {})` if none."""
    state = latest(directory)
    if state is None:
        return 0, {}
    epochs, history, weights = state
    try:
        model.load_weights(weights)
    except Exception as error:    # h5py and Keras raise many kinds
        raise UserError(f"{weights} cannot be loaded into this run ({error}); start "
                        "the run again with --overwrite.") from None
    return epochs, history


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the state after every epoch and calls `on_saved(epochs,
    history)` once it is in place. `history` (metric -> per-epoch values)
    holds the epochs before this `fit()` on a resumed run."""

    def __init__(self, directory, history=None, on_saved=None):
        super().__init__()
        self.directory = directory
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.on_saved = on_saved

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        epochs = epoch + 1
        weights, record = _paths(self.directory, epochs)
        with files.replacing(weights) as partial:
            self.model.save_weights(partial)
        files.write_text(record, json.dumps({"epochs": epochs, "history": self.history}))
        for older in saved_epochs(self.directory)[1:]:
            for name in _paths(self.directory, older):
                files.remove(name)
        if self.on_saved is not None:
            self.on_saved(epochs, self.history)
