"""CIFAR-100 and CIFAR-10 from local files; the TF1 `dataloader.py` read
CIFAR-100 through `keras.datasets.cifar100.load_data()`.

Nothing is downloaded. Places tried, in order:
1. `data_dir`: a prepared tensorflow-datasets copy, the extracted python
   archive (`cifar-100-python/`, `cifar-10-batches-py/`) or the archive itself
   (`cifar-100-python.tar.gz`, `cifar-10-python.tar.gz`);
2. the default tensorflow-datasets directory (`~/tensorflow_datasets`);
3. the Keras cache (`$KERAS_HOME/datasets`, default `~/.keras/datasets`), in
   the layout `keras.datasets.cifar*.load_data()` leaves there (Keras 3:
   `cifar-100-python-target/cifar-100-python/`; Keras 2: `cifar-100-python/`
   or its `.tar.gz`). The files are read directly, in the pickle format
   `load_data` reads, rather than through `load_data`, which would try to
   download when its archive is missing.
"""

import os
import pickle
import tarfile
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from dataloader import keras_cache
from tf_kd.errors import MissingData, UserError


class Layout(NamedTuple):
    """Where a CIFAR variant's pickles are and what they hold."""
    title: str
    folder: str           # the folder the archive extracts to
    archive: str
    train_files: tuple
    test_file: str
    label_key: bytes


LAYOUTS = {
    "cifar100": Layout("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz",
                       ("train",), "test", b"fine_labels"),
    "cifar10": Layout("CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                      tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                      b"labels"),
}

_URL = "https://www.cs.toronto.edu/~kriz/"
# Rebuilding a pickled numpy array needs these globals and nothing else.
_PICKLE_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"),
                   ("numpy.core.multiarray", "_reconstruct"),
                   ("numpy._core.multiarray", "_reconstruct")}


def load(name, data_dir=None):
    """`(train_images, train_labels), (test_images, test_labels)` of `name`
    ("cifar100" or "cifar10"): uint8 NHWC images, int32 labels."""
    return _find(name, data_dir, ("train", "test"))


def load_test(name, data_dir=None):
    """`(test_images, test_labels)` as `load` gives them; the training
    split is never read (data-free distillation)."""
    (test,) = _find(name, data_dir, ("test",))
    return test


def _find(name, data_dir, splits):
    """The `splits` of `name` from the first place that has them."""
    layout = LAYOUTS[name]
    places = []
    if data_dir:
        places += [(_from_tfds, data_dir),
                   (_from_pickles, os.path.join(data_dir, layout.folder)),
                   (_from_pickles, os.path.join(data_dir, layout.archive))]
    keras_dir = keras_cache.datasets_dir()
    places += [(_from_tfds, tfds.core.constants.DATA_DIR),
               (_from_pickles, os.path.join(keras_dir, layout.folder + "-target",
                                            layout.folder)),
               (_from_pickles, os.path.join(keras_dir, layout.folder)),
               (_from_pickles, os.path.join(keras_dir, layout.archive))]
    for read, path in places:
        try:
            arrays = read(name, path, splits)
        except (OSError, EOFError, KeyError, ValueError, tarfile.TarError,
                pickle.UnpicklingError) as error:
            raise UserError(f"{layout.title} at {path} cannot be read ({type(error).__name__}: "
                            f"{error}); the files are incomplete or damaged: extract or download them "
                            "again.") from None
        if arrays is not None:
            return arrays
    tried = "\n  ".join(f"{path} ({'tensorflow-datasets' if read is _from_tfds else 'pickles'})"
                        for read, path in places)
    raise MissingData(
        f"{layout.title} not found; tried:\n  {tried}\nNothing is downloaded: "
        f"put {layout.archive} (from {_URL}{layout.archive}) or the "
        f"{layout.folder}/ folder it extracts to in --data_dir or in "
        f"{keras_dir}, or a tensorflow-datasets copy (`tfds build {name}`) in "
        "--data_dir.")


def _from_tfds(name, root, splits):
    """`splits` of a prepared tensorflow-datasets copy under `root`, or None."""
    if not os.path.isdir(os.path.join(root, name)):
        return None
    builder = tfds.builder(name, data_dir=root)
    if not builder.is_prepared():
        return None
    arrays = []
    for split in splits:
        images, labels = tfds.as_numpy(
            builder.as_dataset(split=split, batch_size=-1, as_supervised=True))
        arrays.append((images, labels.astype(np.int32)))
    return tuple(arrays)


def _from_pickles(name, path, splits):
    """`splits` from the python-pickle batches in folder or .tar.gz `path`,
    or None."""
    layout = LAYOUTS[name]
    if os.path.isdir(path):
        def read(member):
            with open(os.path.join(path, member), "rb") as f:
                return read_batch(f, layout.label_key)
        return _read_splits(layout, read, splits)
    if os.path.isfile(path):
        with tarfile.open(path) as archive:
            def read(member):
                with archive.extractfile(f"{layout.folder}/{member}") as f:
                    return read_batch(f, layout.label_key)
            return _read_splits(layout, read, splits)
    return None


def _read_splits(layout, read, splits):
    """`(images, labels)` of each split, read member by member with `read`."""
    members = {"train": layout.train_files, "test": (layout.test_file,)}
    arrays = []
    for split in splits:
        batches = [read(member) for member in members[split]]
        arrays.append((np.concatenate([images for images, _ in batches]),
                       np.concatenate([labels for _, labels in batches])))
    return tuple(arrays)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only, never code."""

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"Refusing {module}.{name} in a CIFAR file.")
        return super().find_class(module, name)


def read_batch(file, label_key):
    """One pickled CIFAR batch (a dict with b"data", [N, 3072] uint8 in
    channel-major order, and `label_key`) as NHWC uint8 images and int32
    labels."""
    batch = _ArrayUnpickler(file, encoding="bytes").load()
    images = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32)
    return images.transpose(0, 2, 3, 1), np.asarray(batch[label_key], np.int32)
