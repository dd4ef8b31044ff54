"""The trained network's files, each written atomically (`tf_kd.files`).

`train_params.mat` (TF1 keys), `model.keras`, a SavedModel (`saved_model/`)
and its TensorFlow Lite conversion `model.tflite`: all load without this
project; the last two, for deployment, serve `logits` alone by default. Any directory name works, `[`, `*` or `?` in it included, and a
full disk is the `OSError` (ENOSPC) of `tf_kd.files`, the SavedModel's too.
"""

import contextlib
import os
import tempfile

import keras
import tensorflow as tf
from absl import logging as absl_logging

from tf_kd import files, tf1_weights

DEPLOYMENT = ("saved_model", "tflite")    # the optional ones (`--exports`)


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


@contextlib.contextmanager
def glob_free(path):
    """`path` under a name without glob characters, for the TensorFlow calls
    that take a file name for a pattern (loading a SavedModel's variables,
    the TFLite converter): a symbolic link in a new temporary directory."""
    with tempfile.TemporaryDirectory() as directory:
        link = os.path.join(directory, "link")
        os.symlink(os.path.abspath(path), link)
        yield link


@contextlib.contextmanager
def _disk_full_as_os_error():
    """TensorFlow's error for a full disk (or quota), raised as the `OSError`
    every other writer raises (`files.replacing` names the file)."""
    try:
        yield
    except tf.errors.OpError as error:
        for code in files.FULL:
            if os.strerror(code) in error.message:
                raise OSError(code, os.strerror(code)) from None
        raise


def serving(network, features=False):
    """The network a deployment runs: `logits` alone, or (`features`) every
    named output."""
    if features:
        return network
    return keras.Model(network.input, {"logits": network.output["logits"]}, name=network.name)


def save_network(network, train_dir, deployment=DEPLOYMENT, features=False):
    """Write `network`'s artefacts into `train_dir`: `train_params.mat`,
    `model.keras` and the `deployment` exports (of `DEPLOYMENT`; `tflite`
    needs `saved_model`); returns their names. `model.keras` and
    `train_params.mat` hold the whole network (a `--teacher` reads its
    features); the SavedModel and `model.tflite` serve `logits` alone unless
    `features`."""
    def target(name):
        return os.path.join(train_dir, name)

    with files.replacing(target("train_params.mat")) as partial:
        tf1_weights.save_mat(network, partial)
    with files.replacing(target("model.keras")) as partial:
        network.save(partial)
    written = ["train_params.mat", "model.keras"]
    with _quiet():
        if "saved_model" in deployment:
            with files.replacing(target("saved_model")) as partial:
                with _disk_full_as_os_error():
                    serving(network, features).export(partial, verbose=False)
            written.append("saved_model")
        if "tflite" in deployment:
            with glob_free(target("saved_model")) as saved_model:
                tflite = tf.lite.TFLiteConverter.from_saved_model(saved_model).convert()
            files.write_bytes(target("model.tflite"), tflite)
            written.append("model.tflite")
    return written
