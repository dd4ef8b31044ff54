"""A small random dataset with CIFAR-100 shapes (32x32x3 uint8, 100 classes)
for smoke tests. Each class is a random 4x4 colour pattern scaled up to 32x32,
plus noise, so even one short epoch moves the loss."""

import numpy as np

NUM_CLASSES = 100
TRAIN_SIZE, TEST_SIZE = 512, 256
# The generator's pixel moments before rounding and clipping (pattern
# uniform on [0, 255] plus N(0, 32^2) noise), the constants of data-free runs,
# which read no training split.
MEAN = np.full(3, 255 / 2, np.float32)
STD = np.full(3, np.sqrt(255 ** 2 / 12 + 32 ** 2), np.float32)


def load(seed=0):
    """`(train_images, train_labels), (test_images, test_labels)`, the same
    for the same seed."""
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(0, 255, (NUM_CLASSES, 4, 4, 3))

    def sample(count):
        labels = rng.integers(0, NUM_CLASSES, count)
        images = patterns[labels].repeat(8, axis=1).repeat(8, axis=2)
        images = images + rng.normal(0, 32, images.shape)
        return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels.astype(np.int32)

    return sample(TRAIN_SIZE), sample(TEST_SIZE)
