"""The learning-rate schedules (`--schedule`) and the callback that sets them.

`tf1` (TF1 `train_w_distill.learning_rate_scheduler`): the learning rate is
multiplied by `decay_rate` once the epoch reaches `init_epoch +
int(train_epoch * p)` for each `p` in `decay_points`; TF1's Nesterov
momentum (`tf.train.MomentumOptimizer(lr, 0.9, use_nesterov=True)`).

`reference` (RepDistiller `train_student.py`, mdistiller
`configs/cifar100/*.yaml`): x0.1 after epochs 150, 180 and 210 of 240
(`--lr_decay_epochs 150,180,210`, `adjust_learning_rate`: 1-based epoch
`> m`, i.e. 0-based epoch `>= m`), plain momentum 0.9
(`optim.SGD(momentum=0.9)`, no Nesterov, no dampening). Another
`--train_epoch` scales the milestones to `m * train_epoch // 240`.
Both count the milestones after the method's initialisation epochs, as
RepDistiller's `--init_epochs` phase precedes its 240 epochs.
"""

import keras

DECAY_POINTS = (0.3, 0.6, 0.8)

# RepDistiller's `--lr_decay_epochs` of its `--epochs 240`.
REFERENCE_MILESTONES = (150, 180, 210)
REFERENCE_EPOCHS = 240

# `--schedule`: whether its momentum is Nesterov's (`tf_kd.optimizers.Momentum`).
NESTEROV = {"tf1": True, "reference": False}
SCHEDULES = tuple(NESTEROV)


def learning_rate(epoch, base_rate=0.1, init_epoch=0, train_epoch=100,
                  decay_points=DECAY_POINTS, decay_rate=0.1):
    """The TF1 learning rate during (0-based) `epoch`."""
    boundaries = [init_epoch + int(train_epoch * p) for p in decay_points]
    return base_rate * decay_rate ** sum(epoch >= b for b in boundaries)


def milestones(schedule, train_epoch):
    """The epochs after initialisation from which `schedule` has decayed
    the rate once, twice, three times."""
    if schedule == "tf1":
        return [int(train_epoch * p) for p in DECAY_POINTS]
    return [m * train_epoch // REFERENCE_EPOCHS for m in REFERENCE_MILESTONES]


def rate(schedule, epoch, base_rate, init_epoch, train_epoch, decay_rate=0.1):
    """`schedule`'s learning rate during (0-based) `epoch` (for `tf1`,
    `learning_rate`'s)."""
    boundaries = [init_epoch + m for m in milestones(schedule, train_epoch)]
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
