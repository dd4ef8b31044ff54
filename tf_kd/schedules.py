"""The TF1 learning-rate schedule and the callback that sets it.

TF1 (`train_w_distill.learning_rate_scheduler`): the learning rate is
multiplied by `decay_rate` once the epoch reaches `init_epoch +
int(train_epoch * p)` for each `p` in `decay_points`.
"""

import keras

DECAY_POINTS = (0.3, 0.6, 0.8)


def learning_rate(epoch, base_rate=0.1, init_epoch=0, train_epoch=100,
                  decay_points=DECAY_POINTS, decay_rate=0.1):
    """The TF1 learning rate during (0-based) `epoch`."""
    boundaries = [init_epoch + int(train_epoch * p) for p in decay_points]
    return base_rate * decay_rate ** sum(epoch >= b for b in boundaries)


class EpochSchedule(keras.callbacks.Callback):
    """Before each epoch, sets the learning rate to `schedule(epoch)` (and
    logs it)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = self.schedule(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.schedule(epoch))

