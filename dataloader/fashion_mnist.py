"""Fashion-MNIST (28x28 padded to 32x32x1, 10 classes) from local IDX files, gzip'd or not.

Looked up in `data_dir`, then in Debian's `dataset-fashion-mnist` package
(`/usr/share/datasets/fashion-mnist/`), then in the Keras cache
(`$KERAS_HOME/datasets/fashion-mnist/`, default `~/.keras/...`).
"""

import gzip
import os

import numpy as np

from dataloader import keras_cache
from tf_kd.errors import MissingData, UserError

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_UNSIGNED_BYTE = 0x08
PAD = 2   # 28 + 2 * 2 = 32
# The per-channel mean and std of the 60,000 padded training images
# (`preprocessing.channel_stats`, computed once, exactly the float32 values
# `dataloader.load` computes), so that the test split can be normalised as
# the networks were trained without reading the training split.
MEAN = np.array([55.844955], np.float32)
STD = np.array([84.6119], np.float32)


def load(data_dir=None):
    """`(train_images, train_labels), (test_images, test_labels)`: uint8
    images of shape [N, 32, 32, 1] (padded), int32 labels."""
    train_images, train_labels, test_images, test_labels = _read(data_dir, FILES)
    return ((pad_to_32(train_images), train_labels.astype(np.int32)),
            (pad_to_32(test_images), test_labels.astype(np.int32)))


def load_test(data_dir=None):
    """`(test_images, test_labels)` as `load` gives them; the training files
    are never opened (data-free distillation)."""
    test_images, test_labels = _read(data_dir, FILES[2:])
    return pad_to_32(test_images), test_labels.astype(np.int32)


def _read(data_dir, names):
    """The IDX files `names` from the first place that has them all."""
    tried = ([data_dir] if data_dir else []) + [
        DEBIAN_DIR, os.path.join(keras_cache.datasets_dir(), "fashion-mnist")]
    for directory in tried:
        paths = [_find(directory, name) for name in names]
        if all(paths):
            return [read_idx(path) for path in paths]
    raise MissingData(
        f"Fashion-MNIST IDX files ({', '.join(names)}, optionally .gz) not "
        f"found in: {', '.join(tried)}. Install the Debian package "
        "`dataset-fashion-mnist` (apt-get install dataset-fashion-mnist) or "
        "pass --data_dir.")


def pad_to_32(images):
    """[N, 28, 28] -> [N, 32, 32, 1], two black pixels on each side (as
    LeNet-5 read MNIST), so that the networks take the TF1 CIFAR (32x32)
    configuration rather than the five-stage one TF1 uses for other sizes."""
    return np.pad(images, [(0, 0), (PAD, PAD), (PAD, PAD)])[..., None]


def _find(directory, name):
    """`directory/name.gz` or `directory/name`, whichever exists, else None."""
    for path in (os.path.join(directory, name + ".gz"), os.path.join(directory, name)):
        if os.path.isfile(path):
            return path
    return None


def read_idx(path):
    """An unsigned-byte IDX file (gzip'd if its name ends in .gz) as an array:
    magic 0x00 0x00 0x08 <ndim>, then ndim big-endian uint32 sizes, then the
    data."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:    # gzip: bad header, truncated stream
        raise UserError(f"{path} cannot be read ({type(error).__name__}: {error}); "
                        "the file is damaged: reinstall or download it again.") from None
    if len(raw) < 4 or raw[:2] != b"\0\0":
        raise UserError(f"{path} is not an IDX file (bad magic number).")
    if raw[2] != _UNSIGNED_BYTE:
        raise UserError(f"{path}: IDX data type 0x{raw[2]:02x} is not unsigned byte.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header.")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=header)
    if data.size != np.prod(shape, dtype=np.int64):
        raise UserError(f"{path}: {data.size} bytes of data for shape {shape}.")
    return data.reshape(shape)
