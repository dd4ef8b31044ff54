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
    """Full batches of `batch_size` in an epoch of `data`'s training set (at
    least one); under a labelled-data budget, of the split it was drawn from."""
    count = data.epoch_size or len(data.train_labels)
    if count < batch_size:
        raise UserError(f"{count} training examples make no full batch of "
                         f"{batch_size}.")
    return count // batch_size


def train_pipeline(data, batch_size, seed=None, first_epoch=0, replicas=1, indices=False):
    """Endless shuffled, augmented `(images, labels)` batches of `data`'s
    training set, epoch after epoch from epoch `first_epoch`, each epoch
    `steps_per_epoch(data, batch_size)` batches: float32 normalised NHWC
    images and int32 labels (label maps transformed with their images).
    Epoch `e` is the same for the same `(seed, e)`; a None seed draws one.
    `indices`: `((images, indices), labels)`, `indices` (int32) the images'
    places in the training set (`Distiller.example_indices`). Under a
    labelled-data budget see `_budget_batches`."""
    steps = steps_per_epoch(data, batch_size)
    if seed is None:
        seed = np.random.randint(2 ** 31)
    if data.epoch_size is not None:
        return _budget_batches(data, batch_size, steps, seed, first_epoch, replicas, indices)
    images, labels = tf.constant(data.train_images), tf.constant(data.train_labels)

    def epoch_batches(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.random.experimental.stateless_shuffle(
            tf.range(len(data.train_labels)), preprocessing.fold_in(epoch_seed, 0))
        batches = tf.reshape(order[:steps * batch_size], [steps, batch_size])
        step_seeds = tf.map_fn(lambda step: preprocessing.fold_in(epoch_seed, step + 1),
                               tf.range(steps, dtype=tf.int64))
        return tf.data.Dataset.from_tensor_slices((batches, step_seeds))

    def prepare(order, step_seed):
        batch = preprocessing.normalize(tf.gather(images, order), data.mean, data.std)
        batch_labels = tf.gather(labels, order)
        if data.segmentation:
            batch, batch_labels = preprocessing.augment_with_labels(batch, batch_labels,
                                                                    step_seed)
        else:
            batch = preprocessing.augment(batch, step_seed)
        return (batch, order) if indices else batch, batch_labels

    return (tf.data.Dataset.counter(first_epoch)
            .flat_map(epoch_batches)
            .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def _cycled(count, needed, seed):
    """`needed` indices into `count` examples: whole shuffles of them, one
    after another."""
    rounds = -(-needed // count)
    keys = tf.random.stateless_uniform([rounds, count], seed)
    return tf.reshape(tf.argsort(keys, axis=1), [-1])[:needed]


def _budget_batches(data, batch_size, steps, seed, first_epoch, replicas, indices):
    """The batches of a labelled-data budget (`dataloader.budget`): each
    step `batch_size` labelled images, drawn by cycling through shuffles of
    the few labelled ones, and (where `data` keeps them) as many unlabelled
    images after them, with `batch_size` labels. A batch split over
    `replicas` gives each replica its labelled images, then its unlabelled
    ones, so that its labels name its first images (`tf_kd.distillers.base.labelled`).
    `indices`: the images' places, the unlabelled ones after the labelled
    (`Dataset.example_labels`)."""
    unlabeled = data.unlabeled_images
    if unlabeled is not None and batch_size % replicas:
        raise UserError(f"--batch_size={batch_size}: with unlabelled images it must be a "
                        f"multiple of the {replicas} replicas.")
    images, labels = tf.constant(data.train_images), tf.constant(data.train_labels)
    sets = [images] + ([tf.constant(unlabeled)] if unlabeled is not None else [])

    def epoch_batches(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        order_seed = preprocessing.fold_in(epoch_seed, 0)
        orders = [tf.reshape(_cycled(len(each), steps * batch_size,
                                     preprocessing.fold_in(order_seed, i) if i else order_seed),
                             [steps, batch_size]) for i, each in enumerate(sets)]
        step_seeds = tf.map_fn(lambda step: preprocessing.fold_in(epoch_seed, step + 1),
                               tf.range(steps, dtype=tf.int64))
        return tf.data.Dataset.from_tensor_slices((tuple(orders), step_seeds))

    def prepare(orders, step_seed):
        batch = tf.concat([preprocessing.normalize(tf.gather(each, order), data.mean, data.std)
                           for each, order in zip(sets, orders)], 0)
        batch_labels = tf.gather(labels, orders[0])
        if unlabeled is None:
            batch = preprocessing.augment(batch, step_seed)
            return (batch, orders[0]) if indices else batch, batch_labels
        both = preprocessing.augment(batch, step_seed)
        per_replica = tf.reshape(both, [2, replicas, batch_size // replicas, *data.image_shape])
        both = tf.reshape(tf.transpose(per_replica, [1, 0, 2, 3, 4, 5]),
                          [2 * batch_size, *data.image_shape])
        if not indices:
            return both, batch_labels
        # per replica its labelled places, then its unlabelled ones (a concatenation:
        # oneDNN refuses to transpose integers on CPUs without AVX-512)
        places = tf.concat([tf.reshape(orders[0], [replicas, -1]),
                            tf.reshape(len(data.train_images) + orders[1], [replicas, -1])], 1)
        return (both, tf.reshape(places, [-1])), batch_labels

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
