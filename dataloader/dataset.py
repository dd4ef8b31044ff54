"""The in-memory dataset `dataloader.load` returns."""

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """uint8 NHWC images, int32 labels of shape [N] (label maps [N, H, W]
    for segmentation), and the per-channel float32 `mean` / `std` the
    pipelines normalise with. Under a labelled-data budget
    (`dataloader.budget`) the training split holds the labelled images,
    `unlabeled_images` the rest (or None) and `epoch_size` the number of
    images an epoch covers (default: the training split's)."""
    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    mean: np.ndarray
    std: np.ndarray
    unlabeled_images: Optional[np.ndarray] = None
    epoch_size: Optional[int] = None

    @property
    def image_shape(self):
        """(height, width, channels)."""
        return tuple(self.train_images.shape[1:])

    @property
    def segmentation(self):
        """Whether the labels are per-pixel label maps."""
        return self.train_labels.ndim == 3

    @property
    def example_labels(self):
        """int64 `[N]`: the label of each training image by its place in the
        batches' indices (`train_pipeline(indices=True)`): the labelled images,
        then the unlabelled ones (-1)."""
        labels = np.asarray(self.train_labels, np.int64).reshape(-1)
        if self.unlabeled_images is None:
            return labels
        return np.concatenate([labels, np.full(len(self.unlabeled_images), -1, np.int64)])
