"""The in-memory dataset `dataloader.load` returns."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """uint8 NHWC images, int32 labels of shape [N] (label maps [N, H, W]
    for segmentation), and the per-channel float32 `mean` / `std` the
    pipelines normalise with."""
    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    mean: np.ndarray
    std: np.ndarray

    @property
    def image_shape(self):
        """(height, width, channels)."""
        return tuple(self.train_images.shape[1:])

    @property
    def segmentation(self):
        """Whether the labels are per-pixel label maps."""
        return self.train_labels.ndim == 3
