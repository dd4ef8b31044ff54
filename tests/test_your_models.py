"""Your own Keras models (docs/your_models.md): the page's example runs as
written from another directory, and a distiller names everything its
networks lack when it is built."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from tf_kd import distillers, networks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "your_models.md")


def test_the_example_distils_a_plain_cnn_through_fit(tmp_path):
    """Soft_logits, AT and MHGD on a CNN family that is not in nets/, by
    plain `fit`: MHGD leaves its initialisation phase, every student learns
    (far above the 0.1 of chance on the real Fashion-MNIST images), and the
    students load as plain Keras models."""
    with open(PAGE, encoding="utf-8") as f:
        (example,) = re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M)
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(re.findall(r"^(\w+): accuracy ([\d.]+)", result.stdout, re.M))
    assert set(lines) == {"teacher", "SoftLogits", "AttentionTransfer", "MHGD"}, result.stdout
    for name, accuracy in lines.items():
        assert float(accuracy) > 0.3, (name, result.stdout)
    assert result.stdout.count("initialising False") == 3, result.stdout
    student = keras.models.load_model(tmp_path / "MHGD.keras")
    assert student(np.zeros((2, 32, 32, 1), "float32"))["logits"].shape == (2, 10)


def cnn(widths=(8, 16), strides=2, name="net", pool=True):
    x = image = keras.Input((16, 16, 3))
    features = []
    for i, width in enumerate(widths):
        x = keras.layers.Conv2D(width, 3, strides=strides if i else 1, padding="same",
                                activation="relu", name=f"{name}_stage{i}")(x)
        features.append(f"{name}_stage{i}")
    pooled = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    model = keras.Model(image, keras.layers.Dense(5)(pooled), name=name)
    return networks.expose(model, features, pool=f"{name}_pool" if pool else None)


def test_expose_names_the_layers_outputs_and_shares_the_weights():
    model = keras.Sequential([keras.Input((16, 16, 3)),
                              keras.layers.Conv2D(4, 3, name="a"),
                              keras.layers.GlobalAveragePooling2D(name="gap"),
                              keras.layers.Dense(5, name="out")])
    exposed = networks.expose(model, features=["a"], pool="gap")
    assert sorted(exposed.output) == ["feat0", "logits", "pool"]
    x = np.random.RandomState(0).randn(2, 16, 16, 3).astype("float32")
    np.testing.assert_allclose(exposed(x)["logits"], model(x), rtol=1e-6)
    assert exposed.get_layer("a") is model.get_layer("a")


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.dense = keras.layers.Dense(5)

    def call(self, x):
        return {"logits": self.dense(keras.ops.mean(x, axis=(1, 2)))}


def test_expose_refuses_a_subclassed_model_and_says_what_to_do():
    with pytest.raises(ValueError, match=r"subclassed model .* call\(\) return"):
        networks.expose(Subclassed(), features=["x"])


@pytest.mark.parametrize("method, student, teacher, says", [
    (distillers.AttentionTransfer, lambda: keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(5)]),
     cnn, "the student's output is not a dict"),
    (distillers.FitNet, Subclassed, cnn, r"the student \(subclassed\) is not a functional model"),
    (distillers.RKD, lambda: cnn(pool=False), cnn, "the student has no output pool"),
    (distillers.MHGD, lambda: cnn(widths=(8, 16)), lambda: cnn(widths=(8, 32)),
     "feat1 has 16 channels in the student and 32 in the teacher"),
    (distillers.AttentionTransfer, lambda: cnn(strides=2), lambda: cnn(strides=1),
     r"feat1 is \(8, 8\) in the student and \(16, 16\) in the teacher"),
    (distillers.FSP, lambda: cnn(widths=(8,)), cnn, "the student has 1 stage features, the teacher 2"),
])
def test_a_distiller_names_what_its_networks_lack(method, student, teacher, says):
    with pytest.raises(ValueError, match=says) as error:
        method(student(), teacher())
    assert "tf_kd.networks.expose" in str(error.value)


def test_different_widths_are_fine_where_the_method_maps_them():
    distillers.AttentionTransfer(cnn(widths=(8, 16)), cnn(widths=(16, 32)))
    distillers.FitNet(cnn(widths=(8, 16)), cnn(widths=(16, 32)))
