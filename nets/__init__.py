"""Keras networks exposing block features through named outputs."""

from nets import cifar_resnet, vgg, wrn
from nets.fcn import FCN
from nets.mobilenetv2 import MobileNetV2
from nets.resnet import ResNet, feature_names
from nets.resnet50 import ResNet50
from nets.shufflenet import ShuffleV1, ShuffleV2

# TF1's networks; the CIFAR-100 networks of RepDistiller under its names
# (`train_student.py --model_s`), with the reference's widths.
NETWORKS = {"ResNet": ResNet, "FCN": FCN, **cifar_resnet.NETWORKS, **wrn.NETWORKS,
            **vgg.NETWORKS, "ResNet50": ResNet50, "MobileNetV2": MobileNetV2,
            "ShuffleV1": ShuffleV1, "ShuffleV2": ShuffleV2}
# The networks that take a channel multiplier (`--width`).
SCALABLE = ("ResNet", "FCN")


def get_network(name):
    """The network builder registered under `name` (TF1 `--model_name`)."""
    if name not in NETWORKS:
        raise ValueError(
            f"Unknown model_name {name!r}; valid: {', '.join(sorted(NETWORKS))}.")
    return NETWORKS[name]

__all__ = ["FCN", "MobileNetV2", "NETWORKS", "ResNet", "ResNet50", "SCALABLE", "ShuffleV1",
           "ShuffleV2", "feature_names", "get_network"]
