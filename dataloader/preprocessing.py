"""Normalisation and training augmentation, as `pre_processing` in the TF1
`dataloader.py`: `(x - mean) / std`, then (training only) a random left-right
flip, 4-pixel REFLECT padding and a random crop back to the original size.

TF1 augments whole batches: each image is flipped on its own, but
`tf.random_crop(batch, tf.shape(batch))` draws one crop offset per batch,
shared by its images; that is kept. Segmentation label maps are transformed
with their images (`augment_with_labels`)."""

import numpy as np
import tensorflow as tf

# The TF1 constants for CIFAR-100, in the TF1 order. They are the
# training-set statistics in B, G, R order, but TF1 applied them to the R, G, B
# images of `keras.datasets.cifar100`; kept as they are so that TF1-trained
# weights see the inputs they were trained on.
TF1_CIFAR100_MEAN = np.array([112.4776, 124.1058, 129.3773], np.float32)
TF1_CIFAR100_STD = np.array([70.4587, 65.4312, 68.2094], np.float32)

PAD = 4


def channel_stats(images):
    """Per-channel mean and (population) standard deviation of uint8 NHWC
    images, as float32 arrays; exact, from a histogram of pixel values."""
    values = np.arange(256, dtype=np.float64)
    mean, std = [], []
    for channel in range(images.shape[-1]):
        counts = np.bincount(images[..., channel].ravel(), minlength=256)
        m = counts @ values / counts.sum()
        mean.append(m)
        std.append(np.sqrt(counts @ (values - m) ** 2 / counts.sum()))
    return np.array(mean, np.float32), np.array(std, np.float32)


def normalize(images, mean, std):
    """uint8 images to float32 `(x - mean) / std`, per channel."""
    return (tf.cast(images, tf.float32) - mean) / std


def fold_in(seed, data):
    """A new stateless seed (shape [2]) from `seed` and the integer `data`."""
    return tf.random.experimental.stateless_fold_in(seed, data)


def augment(images, seed):
    """Random left-right flip of each image, REFLECT pad by `PAD`, random
    crop back to the input size, for an NHWC batch (one offset for the
    batch, as TF1) or one HWC image; `seed` is a stateless seed, shape [2]."""
    flip_seed, crop_seed = tf.unstack(tf.random.split(seed, 2))
    images = tf.image.stateless_random_flip_left_right(images, flip_seed)
    spatial = [[PAD, PAD], [PAD, PAD], [0, 0]]
    padding = spatial if images.shape.rank == 3 else [[0, 0]] + spatial
    padded = tf.pad(images, padding, mode="REFLECT")
    return tf.image.stateless_random_crop(padded, tf.shape(images), crop_seed)


def augment_with_labels(images, label_maps, seed):
    """`augment` of an NHWC batch and its [B, H, W] label maps together: the
    labels ride along as an extra channel, so each is flipped, padded and
    cropped exactly as its pixels (the values are only moved, never mixed)."""
    both = augment(tf.concat([images, tf.cast(label_maps, images.dtype)[..., None]], -1),
                   seed)
    return both[..., :-1], tf.cast(both[..., -1], label_maps.dtype)
