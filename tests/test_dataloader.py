"""dataloader: preprocessing against NumPy, the pipelines, and each loader on
small files written in the real on-disk formats."""

import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import dataloader
from tf_kd.errors import UserError
from dataloader import cifar, fashion_mnist, preprocessing
from dataloader.dataset import Dataset


@pytest.fixture(autouse=True)
def no_standard_places(tmp_path, monkeypatch):
    """Point the Keras cache and the default tensorflow-datasets directory at
    empty folders so only files a test writes are found."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path / "tfds"))


def random_images(rng, count, size=32, channels=3):
    return rng.integers(0, 256, (count, size, size, channels), dtype=np.uint8)


def tiny_dataset(count=20, size=12):
    """Distinct random images whose label is their index."""
    rng = np.random.default_rng(0)
    images = random_images(rng, count, size)
    mean, std = preprocessing.channel_stats(images)
    return Dataset("tiny", images, np.arange(count, dtype=np.int32),
                   images, np.arange(count, dtype=np.int32), count, mean, std)


def crops_of(image):
    """Every flip + REFLECT-pad + crop of one HWC image, in NumPy."""
    pad, (height, width, _) = preprocessing.PAD, image.shape
    for flipped in (image, image[:, ::-1]):
        padded = np.pad(flipped, [(pad, pad), (pad, pad), (0, 0)], mode="reflect")
        for top in range(2 * pad + 1):
            for left in range(2 * pad + 1):
                yield padded[top:top + height, left:left + width]


def is_augmentation_of(output, image):
    return any(np.allclose(output, crop, atol=1e-5) for crop in crops_of(image))


def normalized(data, images):
    return (images.astype(np.float32) - data.mean) / data.std


# Preprocessing

def test_tf1_cifar100_constants():
    np.testing.assert_array_equal(preprocessing.TF1_CIFAR100_MEAN,
                                  np.float32([112.4776, 124.1058, 129.3773]))
    np.testing.assert_array_equal(preprocessing.TF1_CIFAR100_STD,
                                  np.float32([70.4587, 65.4312, 68.2094]))


def test_normalize_is_the_tf1_formula():
    images = random_images(np.random.default_rng(1), 4)
    mean, std = preprocessing.TF1_CIFAR100_MEAN, preprocessing.TF1_CIFAR100_STD
    expected = (images.astype(np.float64) - mean.astype(np.float64)) / std
    np.testing.assert_allclose(preprocessing.normalize(images, mean, std), expected,
                               rtol=1e-6, atol=1e-6)


def test_channel_stats_match_numpy():
    images = random_images(np.random.default_rng(2), 50)
    mean, std = preprocessing.channel_stats(images)
    assert mean.dtype == std.dtype == np.float32
    pixels = images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-6)


def test_augment_is_a_flip_pad_crop_and_varies():
    image = np.random.default_rng(3).normal(size=(12, 12, 3)).astype(np.float32)
    crops = list(crops_of(image))
    seen = set()
    for i in range(40):
        output = preprocessing.augment(tf.constant(image), tf.constant([i, 7])).numpy()
        assert output.shape == image.shape
        matches = [k for k, crop in enumerate(crops) if np.array_equal(output, crop)]
        assert matches, "not a flip + reflect-pad + crop of the input"
        seen.add(matches[0])
    assert len(seen) > 10
    assert any(k < len(crops) // 2 for k in seen) and any(k >= len(crops) // 2 for k in seen)


# Pipelines

def test_test_pipeline_keeps_everything_in_order_unaugmented():
    data = tiny_dataset(count=20)
    batches = list(dataloader.test_pipeline(data, 8))
    assert [len(labels) for _, labels in batches] == [8, 8, 4]
    images = np.concatenate([images.numpy() for images, _ in batches])
    labels = np.concatenate([labels.numpy() for _, labels in batches])
    assert images.dtype == np.float32 and labels.dtype == np.int32
    np.testing.assert_allclose(images, normalized(data, data.test_images), atol=1e-5)
    np.testing.assert_array_equal(labels, data.test_labels)


def test_train_pipeline_drops_remainder_shuffles_and_augments():
    data = tiny_dataset(count=20)
    pipeline = dataloader.train_pipeline(data, 8, seed=5)
    assert dataloader.steps_per_epoch(data, 8) == 2
    batches = list(pipeline.take(4))
    epochs = [batches[:2], batches[2:]]
    orders = []
    for batches in epochs:
        assert [len(labels) for _, labels in batches] == [8, 8]
        labels = np.concatenate([labels.numpy() for _, labels in batches])
        assert labels.dtype == np.int32 and len(set(labels)) == 16
        orders.append(labels)
        for images, batch_labels in batches:
            assert images.dtype == tf.float32 and images.shape == (8, 12, 12, 3)
            for output, label in zip(images.numpy(), batch_labels.numpy()):
                assert is_augmentation_of(output, normalized(data, data.train_images[label]))
    assert not np.array_equal(orders[0], orders[1]), "not reshuffled each epoch"

    assert not np.array_equal(orders[0], np.arange(16))


def test_train_batch_shares_one_crop_offset_as_tf1():
    image = np.random.default_rng(4).normal(size=(12, 12, 3)).astype(np.float32)
    crops = list(crops_of(image))
    for i in range(10):
        batch = preprocessing.augment(tf.constant(np.stack([image] * 6)),
                                      tf.constant([i, 3])).numpy()
        offsets = {[k for k, crop in enumerate(crops) if np.array_equal(out, crop)][0]
                   % (len(crops) // 2) for out in batch}
        assert len(offsets) == 1   # flips may differ, the window does not

def test_train_pipeline_is_reproducible_with_a_seed():
    data = tiny_dataset(count=20)
    first, second = (next(iter(dataloader.train_pipeline(data, 8, seed=9)))
                     for _ in range(2))
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_array_equal(first[0], second[0])
    other = next(iter(dataloader.train_pipeline(data, 8, seed=10)))
    assert not np.array_equal(first[0], other[0])


def test_train_pipeline_resumed_at_an_epoch_reads_what_the_whole_run_read():
    data = tiny_dataset(count=20)
    whole = list(dataloader.train_pipeline(data, 8, seed=9).take(6))   # epochs 0, 1, 2
    resumed = list(dataloader.train_pipeline(data, 8, seed=9, first_epoch=2).take(2))
    for (images, labels), (expected_images, expected_labels) in zip(resumed, whole[4:]):
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)


def test_train_pipeline_needs_a_full_batch():
    with pytest.raises(ValueError, match="full batch"):
        dataloader.train_pipeline(tiny_dataset(count=5), 8)


# load()

def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError) as error:
        dataloader.load("imagenet")
    for name in ("cifar100", "cifar10", "fashion_mnist", "synthetic"):
        assert name in str(error.value)
    assert dataloader.DATASETS[0] == "cifar100"


def test_synthetic_is_deterministic_and_cifar100_shaped():
    data = dataloader.load("synthetic", seed=3)
    again = dataloader.load("synthetic", seed=3)
    other = dataloader.load("synthetic", seed=4)
    assert data.train_images.shape == (512, 32, 32, 3) and data.test_images.shape == (256, 32, 32, 3)
    assert data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int32
    assert data.num_classes == 100 and data.image_shape == (32, 32, 3)
    assert data.train_labels.max() < 100
    np.testing.assert_array_equal(data.train_images, again.train_images)
    assert not np.array_equal(data.train_images, other.train_images)


def test_subsets_keep_the_first_examples_and_full_set_constants():
    full = dataloader.load("synthetic")
    part = dataloader.load("synthetic", train_subset=100, test_subset=10)
    np.testing.assert_array_equal(part.train_images, full.train_images[:100])
    np.testing.assert_array_equal(part.test_labels, full.test_labels[:10])
    np.testing.assert_array_equal(part.mean, full.mean)
    np.testing.assert_array_equal(part.std, full.std)


# CIFAR, in the python-pickle format keras.datasets reads

class Python2Pickler(pickle._Pickler):
    """Pickles `bytes` as Python 2 `str` (SHORT_BINSTRING / BINSTRING), as
    the CIFAR archives, written by Python 2's cPickle, store them."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj):
        size = len(obj)
        opcode = b"U" + bytes([size]) if size < 256 else b"T" + struct.pack("<I", size)
        self.write(opcode + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def write_cifar_batch(path, images, labels, label_key):
    """A batch as the CIFAR python archives store it: a Python 2 pickle
    (protocol 2, numpy 1 module names) of a dict with str keys and [N, 3072]
    channel-major uint8 rows."""
    batch = {b"batch_label": b"tiny batch",
             label_key: [int(label) for label in labels],
             b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
             b"filenames": [b"image_%d.png" % i for i in range(len(images))]}
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(batch)
    with open(path, "wb") as f:
        f.write(buffer.getvalue().replace(b"cnumpy._core.multiarray\n",
                                          b"cnumpy.core.multiarray\n"))


def write_cifar(root, name, rng, train_per_file=6, test_count=5):
    """The extracted archive of `name` under `root`; returns its arrays."""
    layout = cifar.LAYOUTS[name]
    folder = os.path.join(root, layout.folder)
    os.makedirs(folder)
    classes = 100 if name == "cifar100" else 10
    train = [(random_images(rng, train_per_file), rng.integers(0, classes, train_per_file))
             for _ in layout.train_files]
    for member, (images, labels) in zip(layout.train_files, train):
        write_cifar_batch(os.path.join(folder, member), images, labels, layout.label_key)
    test = (random_images(rng, test_count), rng.integers(0, classes, test_count))
    write_cifar_batch(os.path.join(folder, layout.test_file), *test, layout.label_key)
    train = tuple(np.concatenate(arrays) for arrays in zip(*train))
    return train, test


def check_loaded(data, train, test, num_classes):
    np.testing.assert_array_equal(data.train_images, train[0])
    np.testing.assert_array_equal(data.train_labels, train[1])
    np.testing.assert_array_equal(data.test_images, test[0])
    np.testing.assert_array_equal(data.test_labels, test[1])
    assert data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int32
    assert data.num_classes == num_classes and data.image_shape == (32, 32, 3)


def test_cifar100_from_data_dir(tmp_path):
    train, test = write_cifar(tmp_path / "data", "cifar100", np.random.default_rng(4))
    data = dataloader.load("cifar100", data_dir=str(tmp_path / "data"))
    check_loaded(data, train, test, 100)
    np.testing.assert_array_equal(data.mean, preprocessing.TF1_CIFAR100_MEAN)
    np.testing.assert_array_equal(data.std, preprocessing.TF1_CIFAR100_STD)


def test_cifar10_from_data_dir_with_own_statistics(tmp_path):
    train, test = write_cifar(tmp_path / "data", "cifar10", np.random.default_rng(5))
    data = dataloader.load("cifar10", data_dir=str(tmp_path / "data"), train_subset=7)
    check_loaded(data, (train[0][:7], train[1][:7]), test, 10)
    mean, std = preprocessing.channel_stats(train[0])    # the full training set
    np.testing.assert_array_equal(data.mean, mean)
    np.testing.assert_array_equal(data.std, std)


def test_cifar100_from_the_tar_gz_archive(tmp_path):
    train, test = write_cifar(tmp_path / "extract", "cifar100", np.random.default_rng(6))
    os.makedirs(tmp_path / "data")
    with tarfile.open(tmp_path / "data" / "cifar-100-python.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "extract" / "cifar-100-python", arcname="cifar-100-python")
    check_loaded(dataloader.load("cifar100", data_dir=str(tmp_path / "data")),
                 train, test, 100)


def test_cifar100_test_split_loads_without_the_training_file(tmp_path):
    train, test = write_cifar(tmp_path / "data", "cifar100", np.random.default_rng(8))
    os.remove(tmp_path / "data" / "cifar-100-python" / "train")
    data = dataloader.load_test("cifar100", data_dir=str(tmp_path / "data"), test_subset=3)
    np.testing.assert_array_equal(data.test_images, test[0][:3])
    np.testing.assert_array_equal(data.test_labels, test[1][:3])
    assert len(data.train_images) == 0 and data.num_classes == 100
    np.testing.assert_array_equal(data.mean, preprocessing.TF1_CIFAR100_MEAN)
    with pytest.raises(UserError, match="cifar-100-python/train"):
        dataloader.load("cifar100", data_dir=str(tmp_path / "data"))


def test_cifar100_from_the_keras_3_cache(tmp_path):
    # keras.datasets.cifar100.load_data() extracts to
    # $KERAS_HOME/datasets/cifar-100-python-target/cifar-100-python/.
    cache = tmp_path / "keras_home" / "datasets" / "cifar-100-python-target"
    train, test = write_cifar(cache, "cifar100", np.random.default_rng(7))
    check_loaded(dataloader.load("cifar100"), train, test, 100)


def test_cifar10_from_the_keras_2_cache(tmp_path):
    # tf.keras 2 extracted to $KERAS_HOME/datasets/cifar-10-batches-py/.
    cache = tmp_path / "keras_home" / "datasets"
    train, test = write_cifar(cache, "cifar10", np.random.default_rng(8))
    check_loaded(dataloader.load("cifar10"), train, test, 10)


def test_cifar_missing_says_where_to_put_the_files(tmp_path):
    os.makedirs(tmp_path / "data")
    with pytest.raises(FileNotFoundError) as error:
        dataloader.load("cifar100", data_dir=str(tmp_path / "data"))
    message = str(error.value)
    assert "cifar-100-python.tar.gz" in message and str(tmp_path / "data") in message
    assert os.path.join(str(tmp_path / "keras_home"), "datasets") in message


def test_a_data_dir_that_is_not_a_directory_is_refused_not_passed_over(tmp_path):
    write_cifar(tmp_path / "keras_home" / "datasets" / "cifar-100-python-target", "cifar100",
                np.random.default_rng(7))    # a copy in the standard place
    (tmp_path / "file").write_text("")
    for data_dir in (tmp_path / "missing", tmp_path / "file"):
        for load in (dataloader.load, dataloader.load_test):
            for name in ("cifar100", "synthetic"):
                with pytest.raises(UserError, match=f"--data_dir={data_dir} is not a directory"):
                    load(name, data_dir=str(data_dir))


def test_cifar_pickles_cannot_run_code(tmp_path):
    path = tmp_path / "evil"
    with open(path, "wb") as f:
        pickle.dump({b"data": os.system}, f, protocol=2)
    with open(path, "rb") as f, pytest.raises(pickle.UnpicklingError):
        cifar.read_batch(f, b"labels")


# Fashion-MNIST, from IDX files

def write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path, compress):
    rng = np.random.default_rng(9)
    arrays = [rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 10, 12),
              rng.integers(0, 256, (4, 28, 28)), rng.integers(0, 10, 4)]
    for name, array in zip(fashion_mnist.FILES, arrays):
        write_idx(tmp_path / (name + (".gz" if compress else "")), array, compress)
    data = dataloader.load("fashion_mnist", data_dir=str(tmp_path), train_subset=5)
    padded = [np.pad(a, [(0, 0), (2, 2), (2, 2)])[..., None] for a in arrays[::2]]
    np.testing.assert_array_equal(data.train_images, padded[0][:5])
    np.testing.assert_array_equal(data.train_labels, arrays[1][:5])
    np.testing.assert_array_equal(data.test_images, padded[1])
    np.testing.assert_array_equal(data.test_labels, arrays[3])
    assert data.train_images.dtype == np.uint8 and data.test_labels.dtype == np.int32
    assert data.image_shape == (32, 32, 1) and data.num_classes == 10
    mean, std = preprocessing.channel_stats(padded[0].astype(np.uint8))
    np.testing.assert_array_equal(data.mean, mean)     # the full training set
    np.testing.assert_array_equal(data.std, std)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "not_idx").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="magic"):
        fashion_mnist.read_idx(str(tmp_path / "not_idx"))
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02")
    with pytest.raises(ValueError, match="shape"):
        fashion_mnist.read_idx(str(tmp_path / "short"))
    (tmp_path / "floats").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x00")
    with pytest.raises(ValueError, match="unsigned byte"):
        fashion_mnist.read_idx(str(tmp_path / "floats"))


def test_truncated_archives_name_the_file(tmp_path):
    write_idx(tmp_path / "whole.gz", np.zeros((4, 28, 28)), compress=True)
    (tmp_path / "cut.gz").write_bytes((tmp_path / "whole.gz").read_bytes()[:30])
    with pytest.raises(UserError, match="cut.gz cannot be read.*damaged"):
        fashion_mnist.read_idx(str(tmp_path / "cut.gz"))
    write_cifar(tmp_path / "extract", "cifar100", np.random.default_rng(6))
    os.makedirs(tmp_path / "data")
    archive_path = tmp_path / "data" / "cifar-100-python.tar.gz"
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(tmp_path / "extract" / "cifar-100-python", arcname="cifar-100-python")
    archive_path.write_bytes(archive_path.read_bytes()[:200])
    with pytest.raises(UserError, match="cifar-100-python.tar.gz cannot be read"):
        dataloader.load("cifar100", data_dir=str(tmp_path / "data"))


def test_fashion_mnist_missing_names_paths_and_package(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "debian"))
    os.makedirs(tmp_path / "data")
    with pytest.raises(FileNotFoundError) as error:
        dataloader.load("fashion_mnist", data_dir=str(tmp_path / "data"))
    message = str(error.value)
    assert "dataset-fashion-mnist" in message
    assert str(tmp_path / "data") in message and str(tmp_path / "debian") in message


@pytest.mark.skipif(not os.path.isdir(fashion_mnist.DEBIAN_DIR),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_the_debian_package():
    data = dataloader.load("fashion_mnist")
    assert data.train_images.shape == (60000, 32, 32, 1)     # padded 28x28
    assert data.test_images.shape == (10000, 32, 32, 1)
    np.testing.assert_array_equal(np.bincount(data.train_labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(data.test_labels), [1000] * 10)
    # the published 72.94 / 90.02 of the 28x28 images, with the zero border
    np.testing.assert_allclose(data.mean, [72.94 * 28 ** 2 / 32 ** 2], atol=0.01)
    assert data.std > 80
