"""tf.data pipelines over a loaded `Dataset`, one pass per epoch.

TF1 (`train_w_distill.py`) fed full batches of 128 from a shuffled index list
and validated on batches of 200; here the training set is reshuffled on every
iteration (each Keras epoch) and the last partial batch is dropped, while the
test set is read in order with its last partial batch kept."""

import tensorflow as tf

from dataloader import preprocessing


def train_pipeline(data, batch_size, seed=None):
    """Shuffled, augmented `(images, labels)` batches of `data`'s training set:
    float32 normalised NHWC images and int32 labels (label maps transformed
    with their images)."""
    count = len(data.train_labels)
    if count < batch_size:
        raise ValueError(f"{count} training examples make no full batch of "
                         f"{batch_size}.")
    examples = tf.data.Dataset.from_tensor_slices(
        (data.train_images, data.train_labels))
    examples = examples.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(
        seed=seed, rerandomize_each_iteration=True).batch(2)

    def prepare(batch, seed):
        images, labels = batch
        images = preprocessing.normalize(images, data.mean, data.std)
        if data.segmentation:
            return preprocessing.augment_with_labels(images, labels, seed)
        return preprocessing.augment(images, seed), labels

    batches = examples.batch(batch_size, drop_remainder=True)
    return (tf.data.Dataset.zip(batches, seeds)
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
