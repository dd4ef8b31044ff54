"""Your own Keras models as networks the methods read.

A method reads a network's named outputs (a dict): `logits` always; the
stage features `feat0`, `feat1`, ... (shallow to deep) for the feature
methods; the pooled vector `pool` for RKD. `nets/` builds networks that way;
`expose` makes one of any functional or Sequential Keras model by naming the
layers whose outputs those are, and `check` tells, when a distiller is built,
everything a student or teacher lacks for its method, in one error.
"""

import keras

from nets import feature_names

STAGES, POOL = "stages", "pool"


def expose(model, features=(), logits=None, pool=None):
    """`model` (functional or Sequential) as a Keras model whose output is a
    dict: `logits` (the output of layer `logits`, by default the model's
    own output), `feat0`, `feat1`, ... (the outputs of the layers named in
    `features`, shallow to deep) and `pool` (the output of layer `pool`). It
    shares `model`'s layers and weights.

        student = tf_kd.networks.expose(
            keras_model, features=["block1_relu", "block2_relu"], pool="gap")

    A subclassed model has no layer outputs to name: let its `call` return
    such a dict instead."""
    try:
        inputs = model.inputs
        layer_output = {name: model.get_layer(name).output
                        for name in [*features, *(n for n in (logits, pool) if n)]}
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"expose({model.name}): {error}. Name layers of a functional or Sequential "
            "model built on an Input (a subclassed model has no layer outputs to name: "
            "let its call() return {'logits': ..., 'feat0': ..., ...})") from None
    outputs = {f"feat{i}": layer_output[name] for i, name in enumerate(features)}
    if pool:
        outputs["pool"] = layer_output[pool]
    outputs["logits"] = layer_output[logits] if logits else model.outputs[0]
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs, name=model.name)


def _outputs(network):
    """The network's symbolic output (a dict, for a network the methods
    read); None for a subclassed model."""
    try:
        return network.output
    except (AttributeError, ValueError):    # a Sequential model has only `outputs`
        return getattr(network, "outputs", None) or None


def check(method, student, teacher):
    """Raise one `ValueError` listing what `student` and `teacher` lack for
    `method` (a `Distiller` class): dict outputs, `logits`, its `reads`
    (`STAGES`: as many stage features in both; `POOL`), and the stage
    shapes it needs equal (`same_widths`: channels; `same_sizes`: height and
    width)."""
    problems = []
    roles = [("student", student)] + ([("teacher", teacher)] if teacher is not None else [])
    for role, network in roles:
        outputs = _outputs(network)
        if outputs is None:
            problems.append(f"the {role} ({network.name}) is not a functional model: build "
                            "it on keras.Input, or wrap it with tf_kd.networks.expose")
            continue
        if not isinstance(outputs, dict):
            problems.append(f"the {role}'s output is not a dict of named outputs")
            continue
        needed = ["logits"] + (["pool"] if POOL in method.reads else [])
        missing = [k for k in needed if k not in outputs]
        if STAGES in method.reads and not feature_names(outputs):
            missing.append("feat0, feat1, ... (stage features)")
        if missing:
            problems.append(f"the {role} has no output {', '.join(missing)}")
    if not problems and teacher is not None and STAGES in method.reads:
        problems += _stage_mismatch(method, _outputs(student), _outputs(teacher))
    if problems:
        raise ValueError(
            f"{method.__name__} cannot distil these networks: " + "; ".join(problems)
            + ". Expose the outputs with tf_kd.networks.expose(model, features=[layer "
            "names, shallow to deep], pool=layer name) (docs/your_models.md).")


def _stage_mismatch(method, student, teacher):
    names = feature_names(student), feature_names(teacher)
    if len(names[0]) != len(names[1]):
        return [f"the student has {len(names[0])} stage features, the teacher {len(names[1])}"]
    problems = []
    for name in names[0]:
        s, t = student[name].shape, teacher[name].shape
        if method.same_sizes and tuple(s[1:-1]) != tuple(t[1:-1]):
            problems.append(f"{name} is {tuple(s[1:-1])} in the student and "
                            f"{tuple(t[1:-1])} in the teacher, which it compares position "
                            "by position")
        if method.same_widths and s[-1] != t[-1]:
            problems.append(f"{name} has {s[-1]} channels in the student and {t[-1]} in the "
                            "teacher, and it has no connector between widths")
    return problems
