"""Run train.py with the CPU split into two logical devices, so that
`--strategy=mirrored` has two replicas in one process (logical devices must
be set before TensorFlow starts)."""

import os
import sys

import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from tf_kd.cli.train import run  # noqa: E402

run()
