"""Normalisation and training augmentation, as `pre_processing` in the TF1
`dataloader.py`: `(x - mean) / std`, then (training only) a random left-right
flip, 4-pixel REFLECT padding and a random crop back to the original size."""

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


def augment(image, seed):
    """Random left-right flip, REFLECT pad by `PAD`, random crop back to the
    input size, for one HWC image; `seed` is a stateless seed, shape [2]."""
    flip_seed, crop_seed = tf.unstack(tf.random.split(seed, 2))
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    padded = tf.pad(image, [[PAD, PAD], [PAD, PAD], [0, 0]], mode="REFLECT")
    return tf.image.stateless_random_crop(padded, tf.shape(image), crop_seed)
