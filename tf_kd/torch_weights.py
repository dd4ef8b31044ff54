"""PyTorch `state_dict`s of the RepDistiller / mdistiller CIFAR-100 networks
onto this project's Keras networks of the same name (`nets.NETWORKS`).

The Keras layers carry the PyTorch module paths with `_` for `.`
(`nets.torch_layers`), so `layer1.0.conv1.weight` is the kernel of layer
`layer1_0_conv1`. Layouts differ: a convolution's weight `[out, in / groups,
kh, kw]` is Keras' kernel `[kh, kw, in / groups, out]` (a depthwise one's `[C,
1, kh, kw]` is `[kh, kw, C, 1]`), a linear weight `[out, in]` is `[in, out]`,
and `nn.BatchNorm2d`'s weight, bias, running_mean and running_var are
gamma, beta, moving_mean and moving_variance (its `num_batches_tracked` has
no counterpart and is not needed at inference).

Reading a checkpoint file needs torch (`scripts/convert_teacher.py`); this
module takes the arrays, so that it runs without it.
"""

import keras
import numpy as np

from tf_kd.errors import UserError

_BATCH_NORM = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
               ("running_var", "moving_variance"))
IGNORED = ("num_batches_tracked",)


def state_dict(checkpoint):
    """The `state_dict` in a loaded checkpoint: RepDistiller and mdistiller
    save `{"model": state_dict, "epoch": ..., ...}`; a bare state_dict is
    taken as it is. `module.` prefixes of `nn.DataParallel` are removed."""
    if "model" in checkpoint and isinstance(checkpoint["model"], dict):
        checkpoint = checkpoint["model"]
    return {key.removeprefix("module."): value for key, value in checkpoint.items()}


def _targets(network):
    """`{PyTorch key: (Keras variable, PyTorch array -> Keras array)}`."""
    targets = {}
    for layer in network.layers:
        if not layer.weights:
            continue
        prefix = layer.name.replace("_", ".")
        if isinstance(layer, keras.layers.BatchNormalization):
            for torch_name, keras_name in _BATCH_NORM:
                targets[f"{prefix}.{torch_name}"] = (getattr(layer, keras_name), np.asarray)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            targets[f"{prefix}.weight"] = (layer.kernel, lambda w: w.transpose(2, 3, 0, 1))
        elif isinstance(layer, keras.layers.Conv2D):
            targets[f"{prefix}.weight"] = (layer.kernel, lambda w: w.transpose(2, 3, 1, 0))
        elif isinstance(layer, keras.layers.Dense):
            targets[f"{prefix}.weight"] = (layer.kernel, lambda w: w.T)
        else:
            raise UserError(f"layer {layer.name} ({type(layer).__name__}) of {network.name} "
                            "has no PyTorch counterpart.")
        if getattr(layer, "use_bias", False):
            targets[f"{prefix}.bias"] = (layer.bias, np.asarray)
    return targets


def load_state_dict(network, arrays):
    """Assign `arrays` (`{PyTorch key: numpy array}`) to `network`'s weights.
    Every weight must be there with its shape and every array must have a
    weight, or a `UserError` names them. Returns the number assigned."""
    targets = _targets(network)
    given = {k: v for k, v in arrays.items() if k.rsplit(".", 1)[-1] not in IGNORED}
    missing = sorted(set(targets) - set(given))
    extra = sorted(set(given) - set(targets))
    if missing or extra:
        raise UserError(
            "the state_dict does not fit the network's layers: "
            + "; ".join(part for part in (
                missing and f"{len(missing)} weight(s) missing, e.g. {missing[:3]}",
                extra and f"{len(extra)} unknown, e.g. {extra[:3]}") if part) + ".")
    values = {}
    for key, (variable, transform) in targets.items():
        value = transform(np.asarray(given[key], dtype="float32"))
        if value.shape != tuple(variable.shape):
            raise UserError(f"{key} has shape {np.shape(given[key])} in the checkpoint; "
                            f"the network needs {tuple(variable.shape)} (in Keras' layout).")
        values[key] = value
    for key, (variable, _) in targets.items():
        variable.assign(values[key])
    return len(values)
