"""Keras networks exposing block features through named outputs."""

from nets.fcn import FCN
from nets.resnet import ResNet, feature_names

NETWORKS = {"ResNet": ResNet, "FCN": FCN}


def get_network(name):
    """The network builder registered under `name` (TF1 `--model_name`)."""
    if name not in NETWORKS:
        raise ValueError(
            f"Unknown model_name {name!r}; valid: {', '.join(sorted(NETWORKS))}.")
    return NETWORKS[name]

__all__ = ["FCN", "NETWORKS", "ResNet", "feature_names", "get_network"]
