"""Datasets and their tf.data pipelines (the TF1 `dataloader.py`).

`load(name)` reads a dataset into memory as a `Dataset`; `train_pipeline` and
`test_pipeline` turn it into batches of normalised float32 images and int32
labels (label maps for the segmentation set `fashion_mnist_seg`). CIFAR-100
is normalised with the TF1 constants; the other datasets with the
per-channel mean and std of their full training set. `load_test(name)`
gives the test split alone, with stored constants, for data-free runs.
"""

import os
from typing import Callable, NamedTuple, Optional

from dataloader import cifar, fashion_mnist, fashion_mnist_seg, preprocessing, synthetic
from dataloader.dataset import Dataset
from tf_kd.errors import UserError
from dataloader.pipelines import steps_per_epoch, test_pipeline, train_pipeline


class _Source(NamedTuple):
    read: Callable            # (data_dir, seed) -> ((x_train, y_train), (x_test, y_test))
    num_classes: int
    stats: Optional[tuple]    # fixed (mean, std); None: from the training set


_SOURCES = {
    "cifar100": _Source(lambda data_dir, seed: cifar.load("cifar100", data_dir), 100,
                        (preprocessing.TF1_CIFAR100_MEAN, preprocessing.TF1_CIFAR100_STD)),
    "cifar10": _Source(lambda data_dir, seed: cifar.load("cifar10", data_dir), 10, None),
    "fashion_mnist": _Source(lambda data_dir, seed: fashion_mnist.load(data_dir), 10, None),
    "fashion_mnist_seg": _Source(lambda data_dir, seed: fashion_mnist_seg.load(data_dir),
                                 fashion_mnist_seg.NUM_CLASSES, None),
    "synthetic": _Source(lambda data_dir, seed: synthetic.load(seed), synthetic.NUM_CLASSES,
                         None),
}
DATASETS = tuple(_SOURCES)


def load(name, data_dir=None, train_subset=None, test_subset=None, seed=0):
    """The dataset `name` (one of `DATASETS`). `data_dir`, a directory, is
    searched before the standard places; `train_subset` / `test_subset` keep
    only the first N examples, while `mean` / `std` stay those of the full
    training set; `seed` only changes the synthetic set."""
    if name not in _SOURCES:
        raise UserError(f"Unknown dataset {name!r}; valid names: {', '.join(DATASETS)}.")
    _check_data_dir(data_dir, name)
    source = _SOURCES[name]
    (train_images, train_labels), (test_images, test_labels) = source.read(data_dir, seed)
    mean, std = source.stats or preprocessing.channel_stats(train_images)
    return Dataset(name,
                   _first(train_images, train_subset), _first(train_labels, train_subset),
                   _first(test_images, test_subset), _first(test_labels, test_subset),
                   source.num_classes, mean, std)


# How a dataset's images were prepared before normalisation, where they were.
_PREPARED = {
    "fashion_mnist": "the 28x28 images zero-padded by 2 pixels on each side to 32x32",
    "fashion_mnist_seg": "the 28x28 images zero-padded by 2 pixels on each side to 32x32",
}


def input_description(data):
    """What a network trained on `data` reads, for a deployment to feed it:
    layout, shape, the uint8 pixels' preparation and normalisation."""
    return {"layout": "NHWC", "image_shape": list(data.image_shape),
            "pixels": "uint8 in [0, 255]",
            "prepared": _PREPARED.get(data.name, "none"),
            "normalised": "(pixels - mean) / std, per channel",
            "mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std]}


def _check_data_dir(data_dir, name):
    """A `data_dir` that is not a directory is refused, never passed over."""
    if data_dir and not os.path.isdir(data_dir):
        raise UserError(f"--data_dir={data_dir} is not a directory: name the directory "
                        f"that holds the {name} files, or drop the flag to use the "
                        "standard places.")


def _first(array, count):
    """The first `count` rows of `array`, all of them if `count` is None."""
    if count is not None and count < 1:
        raise UserError(f"A subset needs at least one example, got {count}.")
    return array[:count]


# Datasets that load without their training split, for data-free
# distillation: the test split and the constants the networks were trained
# with (CIFAR-10 has none stored: its constants come from its training set).
_TEST_SOURCES = {
    "cifar100": (lambda data_dir, seed: cifar.load_test("cifar100", data_dir),
                 (preprocessing.TF1_CIFAR100_MEAN, preprocessing.TF1_CIFAR100_STD)),
    "fashion_mnist": (lambda data_dir, seed: fashion_mnist.load_test(data_dir),
                      (fashion_mnist.MEAN, fashion_mnist.STD)),
    "synthetic": (lambda data_dir, seed: synthetic.load(seed)[1],   # generated, not read
                  (synthetic.MEAN, synthetic.STD)),
}


def load_test(name, data_dir=None, test_subset=None, seed=0):
    """`name`'s test split (its first `test_subset` examples) with the stored
    normalisation constants and an empty training split."""
    if name not in _TEST_SOURCES:
        raise UserError(f"{name!r} cannot be loaded without its training split; "
                         f"data-free runs support {', '.join(_TEST_SOURCES)}.")
    _check_data_dir(data_dir, name)
    read, (mean, std) = _TEST_SOURCES[name]
    test_images, test_labels = read(data_dir, seed)
    return Dataset(name, test_images[:0], test_labels[:0],
                   _first(test_images, test_subset), _first(test_labels, test_subset),
                   _SOURCES[name].num_classes, mean, std)


__all__ = ["DATASETS", "Dataset", "input_description", "load", "load_test", "steps_per_epoch", "train_pipeline",
           "test_pipeline"]
