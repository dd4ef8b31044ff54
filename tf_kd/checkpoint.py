"""The state of an unfinished run, saved after every epoch (`train_dir/state/`).

After epoch `n` (counting from 1) `EpochCheckpoint` writes
`epoch{n}.weights.h5` (every weight of the distiller and the optimizer's
state) and then `epoch{n}.json` (the per-epoch metrics so far), each
atomically (the weights are built in memory, so that a full disk is a
clean `OSError`); the `.json` file commits the pair. Other pairs are removed
only after the new one is complete, so a kill at any moment leaves the last
finished epoch's state intact. `latest` finds it; with the epoch-indexed
training pipeline (`dataloader.train_pipeline(first_epoch=n)`) a run resumed
from it is the run it continues. A damaged state is refused, naming the
file, never silently replaced by an older one or by a fresh start.
"""

import glob
import io
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


def _recorded_epochs(directory):
    """The epoch counts with a state record (`epoch{n}.json`) in `directory`,
    newest first."""
    names = glob.glob(os.path.join(glob.escape(directory), "epoch*.json"))
    return sorted((int(m.group(1)) for m in map(_PATTERN.search, names) if m), reverse=True)


def _is_numbers(values, count):
    return (isinstance(values, list) and len(values) == count and
            all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values))


def _history(record, epochs):
    """The per-epoch metrics in the state record `record` of `epochs` epochs."""
    try:
        with open(record, encoding="utf-8") as f:
            content = json.load(f)
        history = content.get("history") if isinstance(content, dict) else None
        if not (isinstance(history, dict) and
                all(_is_numbers(values, epochs) for values in history.values())):
            raise ValueError(f"no history of {epochs} number(s) per metric")
    except (OSError, ValueError) as error:
        raise UserError(f"{record} is damaged ({error}); start the run again with "
                        "--overwrite.") from None
    return history


def latest(directory):
    """`(epochs, history, weights_path)` of the newest complete state in
    `directory`, or None. `history` maps each metric to its per-epoch values.
    A newer record whose weights are missing is said so and passed over; with
    no complete state to fall back on, it is refused."""
    recorded = _recorded_epochs(directory)
    for epochs in recorded:
        weights, record = _paths(directory, epochs)
        if os.path.exists(weights):
            if epochs != recorded[0]:
                print(f"{_paths(directory, recorded[0])[0]} is missing: resuming from the "
                      f"state of epoch {epochs}.")
            return epochs, _history(record, epochs), weights
    if recorded:
        weights, record = _paths(directory, recorded[0])
        raise UserError(f"{weights} is missing (beside {os.path.basename(record)}) and no "
                        "older state is complete: put it back, or start the run again "
                        "with --overwrite.")
    return None


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


class _InMemoryH5(io.BytesIO):
    """A `.weights.h5` file in memory (Keras checks the name's ending)."""

    def __str__(self):
        return "state.weights.h5"


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
        h5 = _InMemoryH5()    # h5py writing to a full disk can crash the process:
        self.model.save_weights(h5)    # Python writes the bytes, and fails cleanly
        files.write_bytes(weights, h5.getvalue())
        files.write_text(record, json.dumps({"epochs": epochs, "history": self.history}))
        for other in _recorded_epochs(self.directory):
            if other != epochs:
                for name in reversed(_paths(self.directory, other)):    # record first
                    files.remove(name)
        if self.on_saved is not None:
            self.on_saved(epochs, self.history)
