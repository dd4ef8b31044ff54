"""Distillation methods, grouped as in the TF1 repository by kind of knowledge."""

from tf_kd.distillers.base import Baseline, Distiller

DISTILLERS = {
    "None": Baseline,
}


def get_distiller(key):
    """The distiller class for a TF1 `--Distillation` key."""
    if key not in DISTILLERS:
        raise ValueError(
            f"Unknown Distillation {key!r}; valid keys: {', '.join(DISTILLERS)}.")
    return DISTILLERS[key]
