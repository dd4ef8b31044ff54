"""Two training steps of a method under MirroredStrategy on two logical CPUs
(run as a script: logical devices must be set before TensorFlow starts)."""

import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from nets import ResNet  # noqa: E402
from tf_kd import optimizers, schedules  # noqa: E402
from tf_kd.distillers import get_distiller  # noqa: E402


def main(key):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        student = ResNet((32, 32, 3), 10, "Student", width=0.125)
        teacher = ResNet((32, 32, 3), 10, "Teacher", width=0.125)
        distiller = get_distiller(key)(student, teacher, init_epoch=0)
        distiller.compile(optimizer=optimizers.Momentum(0.1))
    rng = np.random.RandomState(0)
    images = rng.randn(32, 32, 32, 3).astype("float32")
    labels = rng.randint(0, 10, 32).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    before = [v.numpy().copy() for v in student.trainable_variables]
    history = distiller.fit(data, epochs=1, verbose=0,
                            callbacks=[schedules.EpochSchedule(lambda e: 0.1)])
    loss = history.history["loss"][0]
    assert np.isfinite(loss), loss
    assert np.isfinite(history.history["distillation_loss"][0])
    moved = sum(not np.array_equal(b, v.numpy())
                for b, v in zip(before, student.trainable_variables))
    assert moved == len(before), (moved, len(before))
    print(f"OK {key} loss={loss:.4f}")


if __name__ == "__main__":
    main(sys.argv[1])
