"""Stop a run the moment it diverges.

`NonFiniteGuard` checks the losses the progress bar shows after every
training step and the weights after every epoch; the first non-finite value
raises `Diverged` naming the epoch, the step and the loss terms, before the
epoch's state is saved, so the last saved state is the last good one.
`check_weights` refuses a network loaded with non-finite weights.
"""

import keras
import numpy as np

from tf_kd.errors import Diverged, UserError


def non_finite(variables):
    """Paths of the variables holding a NaN or an infinity."""
    return [v.path for v in variables
            if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v.numpy()))]


def check_weights(model, source):
    """Raise `UserError` if `model`, loaded from `source`, has a non-finite weight."""
    bad = non_finite(model.weights)
    if bad:
        raise UserError(f"{source} holds non-finite weights ({len(bad)} variable(s), "
                        f"e.g. {bad[:3]}): the run that wrote it diverged; use another file.")


def _terms(logs):
    return ", ".join(f"{k} {float(v):.4g}" for k, v in logs.items())


class NonFiniteGuard(keras.callbacks.Callback):
    """Raises `Diverged` at the first non-finite loss or weight."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if not all(np.isfinite(float(v)) for v in logs.values()):
            raise Diverged(f"epoch {self.epoch + 1}, step {batch + 1}: non-finite loss "
                           f"({_terms(logs)}).")

    def on_epoch_end(self, epoch, logs=None):
        bad = non_finite(self.model.trainable_variables + self.model.non_trainable_variables)
        if bad:
            raise Diverged(f"epoch {epoch + 1}: non-finite weights ({len(bad)} "
                           f"variable(s), e.g. {bad[:3]}).")
        logs = {k: v for k, v in (logs or {}).items() if k.startswith("val_")}
        if not all(np.isfinite(float(v)) for v in logs.values()):
            raise Diverged(f"epoch {epoch + 1}: non-finite validation loss ({_terms(logs)}).")
