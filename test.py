"""Evaluate a trained network's top-1 accuracy on a dataset's test split.

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
flags.DEFINE_string("dataset", "cifar100", "Dataset: cifar100, cifar10, fashion_mnist or synthetic.")
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


def evaluate(path, data, batch_size):
    """Top-1 accuracy in percent."""
    logits_fn = load_logits_fn(path, data)
    correct = 0
    for images, labels in dataloader.test_pipeline(data, batch_size):
        predictions = np.argmax(logits_fn(images), axis=-1)
        correct += int(np.sum(predictions == labels.numpy()))
    return 100 * correct / len(data.test_labels)


def main(argv):
    del argv
    data = dataloader.load(F.dataset, data_dir=F.data_dir or None,
                           test_subset=F.test_subset or None)
    print(f"Top-1 accuracy: {evaluate(F.model, data, F.batch_size):.2f}%")


if __name__ == "__main__":
    app.run(main)
