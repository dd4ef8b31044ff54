"""Read and write `.mat` parameter files keyed by the TF1 variable names.

TF1's `train_w_distill.py` saves `train_params.mat` with one entry per
variable of the main scope (`Student/conv0/weights`, `Student/bn0/moving_mean`,
`Student/Resblock0/BasicBlock0/conv1/weights`, `Student/full/biases`, ...) and
loads the teacher from `pre_trained/ResNet.mat` with the same keys. Keras
layer names use `_` where TF1 scopes use `/`.
"""

import numpy as np
import scipy.io as sio

from tf_kd.errors import UserError

_MAT_HEADER = 116    # MAT-file v5 and v7.3 start with a 116-byte text header "MATLAB ..."
_VARIABLE_NAMES = {"kernel": "weights", "bias": "biases"}


def tf1_variables(model, scope=None):
    """`{TF1 name: Keras variable}` for every weight of `model`.

    `scope` defaults to the model's name (`Student` or `Teacher`).
    """
    scope = scope or model.name
    variables = {}
    for layer in model.layers:
        prefix = f"{scope}/{layer.name.replace('_', '/')}"
        for variable in layer.weights:
            name = _VARIABLE_NAMES.get(variable.name, variable.name)
            variables[f"{prefix}/{name}"] = variable
    return variables


def save_mat(model, path, scope=None):
    """Write the model's weights to a TF1-compatible `.mat` file."""
    sio.savemat(path, {name: np.asarray(v.numpy()) for name, v
                       in tf1_variables(model, scope).items()})


def read_mat(path):
    """The arrays of a `.mat` file, without scipy's header entries; a file
    that is not one, or a damaged one, is a `UserError` naming it."""
    try:
        with open(path, "rb") as f:
            header = f.read(_MAT_HEADER)
        if not header.startswith(b"MATLAB"):
            raise UserError(f"{path} is not a MATLAB .mat file (its header is not a "
                            "MAT-file header).")
        return {k: v for k, v in sio.loadmat(path).items() if not k.startswith("__")}
    except UserError:
        raise
    except Exception as error:    # scipy raises many kinds on a damaged file
        raise UserError(f"{path} is a damaged .mat file ({type(error).__name__}: "
                        f"{error}): write it again.") from None


def load_mat(model, source, scope=None):
    """Assign the weights in `source` (a path or a dict of arrays) to `model`.

    Every variable of the model must be present with the right number of
    elements (`.mat` files store vectors as 1xN matrices, so arrays are
    reshaped, as TF1 did); otherwise a `ValueError` names the variable.
    Returns the number of variables assigned.
    """
    arrays = read_mat(source) if isinstance(source, str) else source
    variables = tf1_variables(model, scope)
    missing = [name for name in variables if name not in arrays]
    if missing:
        raise UserError(
            f"{len(missing)} variable(s) of {model.name!r} are missing from the "
            f"weights file, e.g. {missing[:3]}; the file has e.g. "
            f"{sorted(arrays)[:3]}. Was it written for another architecture "
            "or scope (--main_scope)?")
    for name, variable in variables.items():
        value = np.asarray(arrays[name])
        shape = tuple(variable.shape)
        if value.size != np.prod(shape) or (
                value.squeeze().shape != np.empty(shape).squeeze().shape):
            raise UserError(
                f"Variable {name!r} has shape {shape} in the model but "
                f"{value.shape} in the weights file.")
    for name, variable in variables.items():
        variable.assign(np.reshape(arrays[name], variable.shape))
    return len(variables)


def load_weights(model, path):
    """Load `model`'s weights from a TF1 `.mat` file or from a `.keras` file
    holding a network of the same architecture; mismatches name the
    variable. Returns the number of variables assigned."""
    if path.endswith(".keras"):
        source = load_keras(path)
        arrays = {name: v.numpy() for name, v
                  in tf1_variables(source, model.name).items()}
        return load_mat(model, arrays)
    if path.endswith(".mat"):
        return load_mat(model, path)
    raise UserError(f"{path} is not a .keras or .mat file.")


def load_keras(path):
    """`keras.models.load_model(path)`; a damaged file is a `UserError` naming it."""
    import zipfile

    import keras
    if not zipfile.is_zipfile(path):   # Keras would call it "File not found"
        raise UserError(f"{path} is not a readable .keras file (not a complete zip archive: "
                        "truncated, or another kind of file): write it again.")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:    # Keras raises many kinds on a damaged file
        raise UserError(f"{path} is not a readable .keras file ({type(error).__name__}: "
                        f"{error}): write it again.") from None
