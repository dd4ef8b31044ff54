"""The ResNet of the TF1 benchmark (`nets/ResNet.py`) as a Keras model.

Student (ResNet8) has one BasicBlock per stage, teacher (ResNet32) five; the
TF1 README calls them by twice their depth. Layer names follow the TF1
variable scopes with `_` for `/` (`Resblock0_BasicBlock0_conv1` is
`Resblock0/BasicBlock0/conv1`), so weights map one-to-one onto TF1 files.

The model returns a dict of named outputs:
- `logits`;
- `feat{i}`: stage i's last block after its ReLU (TF1 collection `feat`);
- `feat_noact{i}`: the same block's residual sum before the ReLU (`feat_noact`);
- `pool`: the globally averaged last feature map, input of the dense layer.
"""

import keras

from tf_kd import layers

BLOCKS = {"Student": 1, "Teacher": 5}


def stage_config(image_size):
    """Channels `[conv0, stage0, ...]` and stage strides for an input size."""
    if image_size == 32:
        return [32, 64, 128, 256], [1, 2, 2]
    return [16, 32, 64, 128, 256, 512], [1, 2, 2, 2, 2]


def batch_norm(x, name, weight_decay, relu=True):
    """TF1 `batch_norm` (ReLU unless `relu=False`): the fused kernel TF1 ran
    (`tf_kd.layers.BatchNormalization`), saved as Keras' own layers, so that
    a saved network loads without this project."""
    x = layers.BatchNormalization(
        name=name, **layers.batch_norm_args(weight_decay))(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def basic_block(x, depth, stride, name, weight_decay, dilation=1):
    """conv3x3-BN-ReLU-conv3x3-BN, 1x1 conv+BN shortcut if the shape changes;
    `dilation` dilates both 3x3 convolutions (dense-prediction networks).

    Returns the block output after and before its final ReLU.
    """
    out = layers.conv2d(depth, 3, stride, f"{name}_conv0", weight_decay,
                        dilation_rate=dilation)(x)
    out = batch_norm(out, f"{name}_bn0", weight_decay)
    out = layers.conv2d(depth, 3, 1, f"{name}_conv1", weight_decay,
                        dilation_rate=dilation)(out)
    out = batch_norm(out, f"{name}_bn1", weight_decay, relu=False)
    if stride > 1 or depth != x.shape[-1]:
        x = layers.conv2d(depth, 1, stride, f"{name}_conv2", weight_decay)(x)
        x = batch_norm(x, f"{name}_bn2", weight_decay, relu=False)
    pre_activation = keras.layers.Add(name=f"{name}_add")([x, out])
    return keras.layers.ReLU(name=f"{name}_relu")(pre_activation), pre_activation


def ResNet(input_shape=(32, 32, 3), num_classes=100, scope="Student",
           num_blocks=None, width=1.0, weight_decay=layers.WEIGHT_DECAY):
    """Build the TF1 ResNet.

    Args:
        input_shape: image shape; 32x32 inputs get the CIFAR configuration.
        num_classes: size of the logits.
        scope: `"Student"` (1 block per stage) or `"Teacher"` (5 blocks); also
            the model's name and the prefix of its TF1 variable names.
        num_blocks: blocks per stage, overriding the scope's default.
        width: channel multiplier (1.0 is the TF1 network); for short runs.
        weight_decay: TF1 `l2_regularizer` scale on kernels, BN gamma/beta and
            the dense bias.
    """
    if num_blocks is None:
        if scope not in BLOCKS:
            raise ValueError(
                f"Unknown scope {scope!r}; expected one of {sorted(BLOCKS)}.")
        num_blocks = BLOCKS[scope]
    channels, strides = stage_config(input_shape[0])
    channels = [max(1, int(round(c * width))) for c in channels]

    image = keras.Input(input_shape, name="image")
    x = layers.conv2d(channels[0], 3, 1, "conv0", weight_decay)(image)
    x = batch_norm(x, "bn0", weight_decay)
    outputs = {}
    for i, stride in enumerate(strides):
        for j in range(num_blocks):
            x, pre_activation = basic_block(
                x, channels[i + 1], stride if j == 0 else 1,
                f"Resblock{i}_BasicBlock{j}", weight_decay)
        outputs[f"feat{i}"] = x
        outputs[f"feat_noact{i}"] = pre_activation
    pool = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = layers.dense(
        num_classes, "full", weight_decay, use_bias=True,
        bias_initializer="zeros",
        bias_regularizer=layers.l2_regularizer(weight_decay))(pool)
    outputs["pool"] = pool
    outputs["logits"] = logits
    return named_model(image, outputs, scope)


def named_model(image, outputs, scope):
    """The network as a Keras model of its named outputs. Under a
    mixed-precision dtype policy the layers compute in float16 / bfloat16
    and every named output is handed over in float32, so that the losses,
    the decompositions and the softmax run in float32."""
    if keras.config.dtype_policy().compute_dtype != "float32":
        outputs = {name: keras.layers.Activation("linear", dtype="float32",
                                                 name=f"{name}_float32")(value)
                   for name, value in outputs.items()}
    return keras.Model(image, outputs, name=scope)


def feature_names(model, kind="feat"):
    """The per-stage feature output names of a model (or of a dict of its
    outputs), in stage order."""
    outputs = model if isinstance(model, dict) else model.output
    names = [k for k in outputs if k.startswith(kind)
             and k[len(kind):].isdigit()]
    return sorted(names, key=lambda k: int(k[len(kind):]))
