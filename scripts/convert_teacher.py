"""Convert a RepDistiller / mdistiller CIFAR-100 checkpoint into this
project's Keras network, saved as a `.keras` file that `--teacher` takes.

    python scripts/convert_teacher.py --model_name=resnet32x4 \\
        --checkpoint=cifar_teachers/resnet32x4_vanilla/ckpt_epoch_240.pth --output=resnet32x4.keras
    python train.py --dataset=cifar100 --model_name=resnet8x4 --Distillation=AT \\
        --teacher=resnet32x4.keras --teacher_model_name=resnet32x4

`--model_name` is the reference's name of the network (`model_dict` of
RepDistiller, `cifar_model_dict` of mdistiller). A `.pth` / `.pt` file is
read with `torch.load(weights_only=True)`, which restores tensors and plain
containers and never runs code from the file; torch is needed for those
only. A `.npz` of the state_dict's arrays (key: the state_dict's key) needs
no torch. The number of classes comes from the classifier's weight.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tf_kd import files, torch_weights  # noqa: E402
from tf_kd.cli import EXIT_USER_ERROR  # noqa: E402
from tf_kd.errors import UserError  # noqa: E402

TF1_NETWORKS = ("ResNet", "FCN")     # named after TF1's scopes, not PyTorch modules


def read_checkpoint(path):
    """`{key: numpy array}` of the state_dict in `path` (`.pth`, `.pt` or `.npz`)."""
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return torch_weights.state_dict(dict(arrays))
        except Exception as error:    # numpy raises many kinds on a damaged file
            raise UserError(f"--checkpoint={path} is not a readable .npz of arrays "
                            f"({type(error).__name__}: {error}).") from None
    try:
        import torch
    except ImportError:
        raise UserError(f"--checkpoint={path}: reading a PyTorch file needs torch "
                        "(pip install torch), or pass a .npz of its state_dict.") from None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:    # torch raises many kinds on a damaged or unsafe file
        reason = ("torch.load(weights_only=True) refused it: not a file of tensors and plain "
                  "containers only" if "Weights only load failed" in str(error)
                  else f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}")
        raise UserError(f"--checkpoint={path} is not a readable PyTorch checkpoint of "
                        f"weights ({reason}).") from None
    return {k: (v.float() if v.is_floating_point() else v).numpy()
            for k, v in torch_weights.state_dict(checkpoint).items()
            if isinstance(v, torch.Tensor)}


def convert(model_name, arrays, image_shape=(32, 32, 3)):
    """The network `model_name` (`nets.NETWORKS`) as a `Teacher` model with
    the weights of `arrays` (a state_dict's arrays)."""
    import nets
    if model_name not in nets.NETWORKS or model_name in TF1_NETWORKS:
        raise UserError(f"--model_name={model_name}: not a RepDistiller network; valid: "
                        + ", ".join(n for n in nets.NETWORKS if n not in TF1_NETWORKS) + ".")
    linear = [np.shape(v) for v in arrays.values() if np.ndim(v) == 2]
    if len(linear) != 1:
        raise UserError(f"--model_name={model_name}: the checkpoint has {len(linear)} linear "
                        "weights; these networks have one, the classifier.")
    network = nets.get_network(model_name)(image_shape, linear[0][0], "Teacher")
    try:
        torch_weights.load_state_dict(network, arrays)
    except UserError as error:
        raise UserError(f"--model_name={model_name}: {error}") from None
    return network


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", required=True, help="e.g. resnet32x4, wrn_40_2, vgg13")
    parser.add_argument("--checkpoint", required=True, help=".pth, .pt or .npz")
    parser.add_argument("--output", required=True, help="the .keras file to write")
    args = parser.parse_args(argv)
    try:
        if not args.output.endswith(".keras"):
            raise UserError(f"--output={args.output}: name a .keras file.")
        network = convert(args.model_name, read_checkpoint(args.checkpoint))
        with files.replacing(args.output) as partial:
            network.save(partial)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    parameters = sum(int(np.prod(v.shape)) for v in network.trainable_weights)
    print(f"{args.output}: {args.model_name} with {parameters:,} parameters "
          f"({network.output['logits'].shape[-1]} classes); pass --teacher={args.output} "
          f"--teacher_model_name={args.model_name}.")


if __name__ == "__main__":
    main()
