"""A labelled-data budget: `per_class` labelled training images of each
class, drawn by a seed; the rest of the training split may stay in the run
without its labels.

Distillation pays most where labels are few and the teacher has seen more
(Hinton et al. 2015, section 5: a speech model trained on 3% of the data
reached 57.0% frame accuracy with soft targets against 44.5% with hard
ones), and the teacher's outputs on unlabelled images are the usual reason
to distil in practice. An epoch still covers the whole split the budget was
drawn from (`Dataset.epoch_size`), so a budget changes what a run learns
from, not how long it trains.
"""

import dataclasses
import hashlib

import numpy as np

from tf_kd.errors import UserError

UNLABELED = ("rest", "none")


def draw(labels, per_class, num_classes, seed):
    """Sorted indices of `per_class` examples of each class of `labels`,
    drawn without replacement by `seed`."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise UserError(f"--labels_per_class={per_class}: class {label} has only "
                            f"{len(members)} training images; lower it (or raise "
                            "--train_subset).")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def fingerprint(indices):
    """SHA-256 of the drawn indices (int64, in order), to record with a run."""
    return hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest()


def apply(data, per_class, seed, keep_unlabeled):
    """`(data, record)`: `data` with `per_class` labelled training images of
    each class, and (`keep_unlabeled`) the rest of its training images as
    `unlabeled_images`; `record` says what was drawn."""
    if data.segmentation:
        raise UserError(f"--labels_per_class: --dataset={data.name} labels pixels, not "
                        "images; a per-class budget needs a classification dataset.")
    indices = draw(data.train_labels, per_class, data.num_classes, seed)
    rest = np.setdiff1d(np.arange(len(data.train_labels)), indices)
    budgeted = dataclasses.replace(
        data, train_images=data.train_images[indices], train_labels=data.train_labels[indices],
        unlabeled_images=data.train_images[rest] if keep_unlabeled and len(rest) else None,
        epoch_size=len(data.train_labels))
    record = {"labels_per_class": per_class, "labelled": len(indices),
              "unlabeled": len(rest) if budgeted.unlabeled_images is not None else 0,
              "indices_sha256": fingerprint(indices)}
    return budgeted, record
