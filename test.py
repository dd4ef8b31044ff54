"""Evaluate a trained network's top-1 accuracy on a dataset's test split
(pixel accuracy and mean IoU on a segmentation set).

    python test.py --model=runs/student/model.keras --dataset=fashion_mnist

`--model` is a `.keras` file, a SavedModel directory or a TF1-keyed `.mat`
file (then `--main_scope`, `--model_name` and `--width` give the architecture).
"""

import os

from absl import app, flags
import keras
import numpy as np
import tensorflow as tf

import dataloader
import nets
from tf_kd import tf1_weights

F = flags.FLAGS
flags.DEFINE_string("model", None, "A .keras file, a SavedModel directory or a .mat file.")
flags.DEFINE_string("dataset", "cifar100", "Dataset: cifar100, cifar10, fashion_mnist, "
                    "fashion_mnist_seg (segmentation) or synthetic.")
flags.DEFINE_string("data_dir", "", "Where the dataset files are (default: standard places).")
flags.DEFINE_integer("test_subset", 0, "Use only the first N test images (0: all).")
flags.DEFINE_integer("batch_size", 200, "Evaluation batch size.")
flags.DEFINE_string("model_name", "ResNet", "Architecture of a .mat file.")
flags.DEFINE_enum("main_scope", "Student", ["Student", "Teacher"], "Scope of a .mat file.")
flags.DEFINE_float("width", 1.0, "Channel multiplier of a .mat file's network.")
flags.mark_flag_as_required("model")


def load_logits_fn(path, data):
    """A function from a batch of images to logits."""
    if path.endswith(".mat"):
        network = nets.get_network(F.model_name)(
            input_shape=data.image_shape, num_classes=data.num_classes,
            scope=F.main_scope, width=F.width)
        tf1_weights.load_mat(network, path)
    elif path.endswith(".keras"):
        network = keras.models.load_model(path, compile=False)
    elif os.path.isdir(path):
        saved = tf.saved_model.load(path)    # keep it alive: it owns the variables
        return lambda images: saved.serve(images)["logits"]
    else:
        raise ValueError(f"{path!r} is not a .keras file, a SavedModel "
                         "directory or a .mat file.")
    return tf.function(lambda images: network(images, training=False)["logits"])


def confusion_matrix(path, data, batch_size):
    """Counts of (label, argmax prediction) pairs over the test split, per
    image, or per pixel for segmentation."""
    logits_fn = load_logits_fn(path, data)
    n = data.num_classes
    counts = np.zeros(n * n, np.int64)
    for images, labels in dataloader.test_pipeline(data, batch_size):
        predictions = np.argmax(logits_fn(images), axis=-1)
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


def main(argv):
    del argv
    data = dataloader.load(F.dataset, data_dir=F.data_dir or None,
                           test_subset=F.test_subset or None)
    confusion = confusion_matrix(F.model, data, F.batch_size)
    if data.segmentation:
        print(f"Pixel accuracy: {accuracy(confusion):.2f}%, "
              f"mIoU: {mean_iou(confusion):.2f}%")
    else:
        print(f"Top-1 accuracy: {accuracy(confusion):.2f}%")


if __name__ == "__main__":
    app.run(main)
