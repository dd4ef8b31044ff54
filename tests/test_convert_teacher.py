"""scripts/convert_teacher.py: a RepDistiller state_dict becomes our Keras
network, which computes what the reference computes, and `--teacher` takes
the `.keras` file it writes.

The fixture `data/resnet8_reference.npz` was written once with torch by
`data/make_reference.py` from RepDistiller's `models/resnet.py` (commit
b84f547c5db6a35318d4671d7d5c4de74c822403): resnet8's state_dict with
trained-looking batch-norm statistics, two images, and the reference's logits,
pooled feature and pre-activation stage features on them (eval mode)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tf_kd import torch_weights, training
from tf_kd.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "data", "resnet8_reference.npz")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import convert_teacher  # noqa: E402


def reference(path=FIXTURE):
    with np.load(path) as arrays:
        arrays = dict(arrays)
    state = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("state_dict/")}
    return state, {k: v for k, v in arrays.items() if not k.startswith("state_dict/")}


def assert_close(ours, theirs, name):
    """Within 1e-5 of the reference, relative to its largest magnitude."""
    scale = np.abs(theirs).max()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * scale, err_msg=name)


def agreement(model_name, path=FIXTURE):
    """The converted network's outputs against the reference's, on its images."""
    state, expected = reference(path)
    network = convert_teacher.convert(model_name, state)
    out = {k: v.numpy() for k, v in network(expected["images"], training=False).items()}
    for name, value in expected.items():
        if name.startswith("feat_noact") and name not in out:    # MobileNetV2: no preact
            name = name.replace("_noact", "")
        if name != "images":
            assert_close(out[name], value, name)
            if name.startswith("feat_noact") and model_name.startswith("resnet"):
                feat = name.replace("_noact", "")
                assert_close(out[feat], np.maximum(value, 0), feat)
    return network, expected


def test_converted_resnet8_computes_the_references_logits_and_features():
    network, expected = agreement("resnet8")
    assert set(expected) - {"images"} == {"logits", "pool", "feat_noact0", "feat_noact1",
                                          "feat_noact2"}
    assert network.name == "Teacher"


def test_a_mismatch_names_the_weights():
    state, _ = reference()
    with pytest.raises(UserError, match=r"weight\(s\) missing, e.g. \['layer1.1.bn1.bias'"):
        convert_teacher.convert("resnet14", state)
    del state["fc.bias"]
    with pytest.raises(UserError, match=r"1 weight\(s\) missing, e.g. \['fc.bias'\]"):
        convert_teacher.convert("resnet8", state)
    state, _ = reference()
    state["conv1.weight"] = state["conv1.weight"][:8]
    with pytest.raises(UserError, match=r"conv1.weight has shape \(8, 3, 3, 3\)"):
        convert_teacher.convert("resnet8", state)
    with pytest.raises(UserError, match="not a RepDistiller network"):
        convert_teacher.convert("ResNet", state)


def test_checkpoint_layouts():
    arrays = {"module.fc.weight": np.zeros((2, 3))}
    assert list(torch_weights.state_dict({"model": arrays, "epoch": 240})) == ["fc.weight"]
    assert list(torch_weights.state_dict(arrays)) == ["fc.weight"]


def test_the_script_writes_a_teacher_that_train_py_takes(tmp_path):
    state, expected = reference()
    checkpoint = str(tmp_path / "resnet8.npz")
    np.savez(checkpoint, **state)
    output = str(tmp_path / "resnet8.keras")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert_teacher.py"),
                             "--model_name=resnet8", f"--checkpoint={checkpoint}",
                             f"--output={output}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "83,892 parameters (100 classes)" in result.stdout
    config = training.Config(
        train_dir=str(tmp_path / "student"), dataset="synthetic", model_name="resnet8",
        Distillation="Soft_logits", teacher=output, teacher_model_name="resnet8",
        train_epoch=1, batch_size=32, train_subset=64, test_subset=50, verbose=0)
    data, _ = training.load_data(config)
    teacher = training.load_teacher(config, data)
    logits = teacher(expected["images"], training=False)["logits"].numpy()
    assert_close(logits, expected["logits"], "logits")
    assert training.train(config).record["state"] == "finished"
