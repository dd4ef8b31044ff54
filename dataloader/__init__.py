"""Datasets and their tf.data pipelines (the TF1 `dataloader.py`).

`load(name)` reads a dataset into memory as a `Dataset`; `train_pipeline` and
`test_pipeline` turn it into batches of normalised float32 images and int32
labels (label maps for the segmentation set `fashion_mnist_seg`). CIFAR-100
is normalised with the TF1 constants; the other datasets with the
per-channel mean and std of their full training set.
"""

from typing import Callable, NamedTuple, Optional

from dataloader import cifar, fashion_mnist, fashion_mnist_seg, preprocessing, synthetic
from dataloader.dataset import Dataset
from dataloader.pipelines import test_pipeline, train_pipeline


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
    """The dataset `name` (one of `DATASETS`). `data_dir` is searched before
    the standard places; `train_subset` / `test_subset` keep only the first N
    examples, while `mean` / `std` stay those of the full training set;
    `seed` only changes the synthetic set."""
    if name not in _SOURCES:
        raise ValueError(f"Unknown dataset {name!r}; valid names: {', '.join(DATASETS)}.")
    source = _SOURCES[name]
    (train_images, train_labels), (test_images, test_labels) = source.read(data_dir, seed)
    mean, std = source.stats or preprocessing.channel_stats(train_images)
    return Dataset(name,
                   _first(train_images, train_subset), _first(train_labels, train_subset),
                   _first(test_images, test_subset), _first(test_labels, test_subset),
                   source.num_classes, mean, std)


def _first(array, count):
    """The first `count` rows of `array`, all of them if `count` is None."""
    if count is not None and count < 1:
        raise ValueError(f"A subset needs at least one example, got {count}.")
    return array[:count]


__all__ = ["DATASETS", "Dataset", "load", "train_pipeline", "test_pipeline"]
