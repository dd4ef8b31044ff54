"""tf.data pipelines over a loaded `Dataset`.

TF1 (`train_w_distill.py`) fed full batches of 128 from a shuffled index list
and validated on batches of 200. Here the training pipeline runs epoch after
epoch, each epoch a fresh shuffle with its last partial batch dropped, and
each epoch's order and augmentation depend only on the seed and the epoch's
number: a run resumed at epoch `e` reads exactly the batches the
uninterrupted run read. The test set is read in order with its last partial
batch kept."""

import numpy as np
import tensorflow as tf

from dataloader import preprocessing
from tf_kd.errors import UserError


def steps_per_epoch(data, batch_size):
    """Full batches of `batch_size` in `data`'s training set (at least one)."""
    count = len(data.train_labels)
    if count < batch_size:
        raise UserError(f"{count} training examples make no full batch of "
                         f"{batch_size}.")
    return count // batch_size


def train_pipeline(data, batch_size, seed=None, first_epoch=0):
    """Endless shuffled, augmented `(images, labels)` batches of `data`'s
    training set, epoch after epoch from epoch `first_epoch`, each epoch
    `steps_per_epoch(data, batch_size)` batches: float32 normalised NHWC
    images and int32 labels (label maps transformed with their images).
    Epoch `e` is the same for the same `(seed, e)`; a None seed draws one."""
    steps = steps_per_epoch(data, batch_size)
    if seed is None:
        seed = np.random.randint(2 ** 31)
    images, labels = tf.constant(data.train_images), tf.constant(data.train_labels)

    def epoch_batches(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.random.experimental.stateless_shuffle(
            tf.range(len(data.train_labels)), preprocessing.fold_in(epoch_seed, 0))
        batches = tf.reshape(order[:steps * batch_size], [steps, batch_size])
        step_seeds = tf.map_fn(lambda step: preprocessing.fold_in(epoch_seed, step + 1),
                               tf.range(steps, dtype=tf.int64))
        return tf.data.Dataset.from_tensor_slices((batches, step_seeds))

    def prepare(indices, step_seed):
        batch = preprocessing.normalize(tf.gather(images, indices), data.mean, data.std)
        batch_labels = tf.gather(labels, indices)
        if data.segmentation:
            return preprocessing.augment_with_labels(batch, batch_labels, step_seed)
        return preprocessing.augment(batch, step_seed), batch_labels

    return (tf.data.Dataset.counter(first_epoch)
            .flat_map(epoch_batches)
            .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def test_pipeline(data, batch_size):
    """`data`'s test set in order, normalised, not augmented, in batches of
    `batch_size` (the last one may be smaller)."""

    def prepare(images, labels):
        return preprocessing.normalize(images, data.mean, data.std), labels

    return (tf.data.Dataset.from_tensor_slices(
                (data.test_images, data.test_labels))
            .batch(batch_size)
            .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))
