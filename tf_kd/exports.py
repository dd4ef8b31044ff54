"""The trained network's files, each written atomically (`tf_kd.files`).

`train_params.mat` (TF1 keys), `model.keras`, a SavedModel (`saved_model/`)
and its TensorFlow Lite conversion `model.tflite`: all load without this
project.
"""

import contextlib
import os

import tensorflow as tf
from absl import logging as absl_logging

from tf_kd import files, tf1_weights

ARTEFACTS = ("train_params.mat", "model.keras", "saved_model", "model.tflite")


@contextlib.contextmanager
def _quiet():
    """absl's INFO lines of the SavedModel writer and the converter, off;
    warnings and errors still show."""
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        yield
    finally:
        absl_logging.set_verbosity(verbosity)


def save_network(network, train_dir):
    """Write the four artefacts of `network` into `train_dir`; returns their names."""
    def target(name):
        return os.path.join(train_dir, name)

    with files.replacing(target("train_params.mat")) as partial:
        tf1_weights.save_mat(network, partial)
    with files.replacing(target("model.keras")) as partial:
        network.save(partial)
    with _quiet():
        with files.replacing(target("saved_model")) as partial:
            network.export(partial, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(target("saved_model"))
        files.write_bytes(target("model.tflite"), converter.convert())
    return list(ARTEFACTS)
