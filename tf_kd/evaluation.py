"""Top-1 accuracy of a trained network on a dataset's test split (pixel
accuracy and mean IoU on a segmentation set), from any of a run's exports.

`load_logits_fn` opens a `.keras` file, a SavedModel directory or a
TF1-keyed `.mat` file (rebuilt from the architecture its run recorded, or
given) and checks that it reads the dataset's images and predicts its
labels before anything is scored.
"""

import os

import numpy as np
import tensorflow as tf

import dataloader
import nets
from tf_kd import exports, tf1_weights
from tf_kd.errors import UserError


def load_logits_fn(path, data, architecture):
    """A function from a batch of normalised images to logits, and the
    model's input shape. `architecture` (model_name, main_scope, width)
    rebuilds a `.mat` file's network. A model that does not return the
    named outputs (`logits`) of this project's networks is refused."""
    if path.endswith(".mat"):
        network = nets.get_network(architecture["model_name"])(
            input_shape=data.image_shape, num_classes=data.num_classes,
            scope=architecture["main_scope"], width=architecture["width"])
        try:
            tf1_weights.load_mat(network, path)
        except UserError as error:
            raise UserError(f"--model={path}: {error} Pass the run's --main_scope, "
                            "--model_name and --width, or evaluate its model.keras.") from None
    elif path.endswith(".keras"):
        network = tf1_weights.load_keras(path)
        # a Sequential or subclassed model has no `output`
        if len(getattr(network, "inputs", None) or ()) != 1 or not _named(
                getattr(network, "output", None)):
            raise _not_ours(path)
    elif os.path.isdir(path):
        try:
            with exports.glob_free(path) as plain:   # `[`, `*`, `?` in a name work too
                saved = tf.saved_model.load(plain)   # keep it alive: it owns the variables
        except Exception as error:   # TensorFlow raises many kinds on a damaged directory
            raise UserError(f"--model={path} is not a readable SavedModel "
                            f"({type(error).__name__}).") from None
        signature = getattr(getattr(saved, "serve", None), "input_signature", None)
        if not signature or len(signature) != 1:
            raise _not_ours(path)

        def logits(images):
            outputs = saved.serve(images)
            if not _named(outputs):
                raise _not_ours(path)
            return outputs["logits"]
        return logits, tuple(signature[0].shape[1:])
    else:
        raise UserError(f"--model={path} is not a .keras file, a SavedModel "
                        "directory or a .mat file.")
    logits = tf.function(lambda images: network(images, training=False)["logits"])
    return logits, tuple(network.input.shape[1:])


def _named(outputs):
    """Whether `outputs` are this project's named outputs."""
    return isinstance(outputs, dict) and "logits" in outputs


def _not_ours(path):
    return UserError(f"--model={path} is not a network saved by train.py (one batch of "
                     "images in, a dict of named outputs with 'logits' out): name a run "
                     "directory or one of its files.")


def check_logits(logits, data, path):
    """Refuse a model whose logits do not predict `data`'s labels."""
    label_rank = data.test_labels.ndim + 1
    if logits.shape.rank != label_rank or logits.shape[-1] != data.num_classes:
        kind = "label maps" if data.segmentation else "class labels"
        raise UserError(f"--model={path} predicts logits of shape {logits.shape[1:]}; "
                        f"--dataset={data.name} has {kind} of {data.num_classes} classes.")


def confusion_matrix(logits_fn, data, batch_size, path=""):
    """Counts of (label, argmax prediction) pairs over the test split, per
    image, or per pixel for segmentation. `logits_fn` is what
    `load_logits_fn` returns; a model that does not fit `data` is refused."""
    fn, input_shape = logits_fn
    if tuple(input_shape) != tuple(data.image_shape):
        raise UserError(f"--model={path} reads images of shape {tuple(input_shape)}; "
                        f"--dataset={data.name} has {data.image_shape}.")
    n = data.num_classes
    counts = np.zeros(n * n, np.int64)
    for i, (images, labels) in enumerate(dataloader.test_pipeline(data, batch_size)):
        logits = fn(images)
        if i == 0:
            check_logits(logits, data, path)
        predictions = np.argmax(logits, axis=-1)
        counts += np.bincount((labels.numpy() * n + predictions).ravel(), minlength=n * n)
    return counts.reshape(n, n)


def accuracy(confusion):
    """Top-1 (or pixel) accuracy in percent."""
    return 100 * np.trace(confusion) / confusion.sum()


def mean_iou(confusion):
    """Mean over the classes present in labels or predictions of
    `TP / (TP + FP + FN)`, in percent (as `keras.metrics.MeanIoU`)."""
    true_positives = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - true_positives
    return 100 * np.mean(true_positives[union > 0] / union[union > 0])
