import numpy as np
import pytest
import scipy.io as sio

from nets import ResNet
from tf_kd import tf1_weights


def small(scope="Student", **kw):
    return ResNet((32, 32, 3), 10, scope, width=0.25, **kw)


def test_names_are_the_tf1_keys():
    names = set(tf1_weights.tf1_variables(small("Teacher")))
    for key in ["Teacher/conv0/weights", "Teacher/bn0/moving_mean",
                "Teacher/bn0/moving_variance", "Teacher/bn0/gamma", "Teacher/bn0/beta",
                "Teacher/Resblock0/BasicBlock0/conv1/weights",
                "Teacher/Resblock1/BasicBlock0/conv2/weights",
                "Teacher/Resblock2/BasicBlock4/bn1/gamma",
                "Teacher/full/weights", "Teacher/full/biases"]:
        assert key in names
    assert not any("relu" in n or "add" in n for n in names)
    # conv, bn (4 vars) per layer; 1x1 shortcut only where the shape changes
    assert "Teacher/Resblock0/BasicBlock1/conv2/weights" not in names


def test_round_trip(tmp_path):
    a, b = small(), small()
    rng = np.random.RandomState(0)
    for v in a.weights:   # moving statistics too
        v.assign(rng.randn(*v.shape).astype("float32"))
    path = str(tmp_path / "train_params.mat")
    tf1_weights.save_mat(a, path)
    saved = sio.loadmat(path)
    assert "Student/full/biases" in saved
    assert tf1_weights.load_mat(b, path) == len(a.weights)
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    x = rng.randn(2, 32, 32, 3).astype("float32")
    np.testing.assert_allclose(a(x)["logits"], b(x)["logits"], rtol=1e-6)


def test_load_under_another_scope(tmp_path):
    teacher = small("Teacher", num_blocks=1)
    path = str(tmp_path / "t.mat")
    tf1_weights.save_mat(teacher, path)
    with pytest.raises(ValueError, match="missing.*Student/conv0/weights"):
        tf1_weights.load_mat(small(), path)
    assert tf1_weights.load_mat(small(), path, scope="Teacher") > 0


def test_missing_key_is_named(tmp_path):
    arrays = {k: v.numpy() for k, v in tf1_weights.tf1_variables(small()).items()}
    del arrays["Student/Resblock1/BasicBlock0/bn2/moving_variance"]
    with pytest.raises(ValueError, match="Resblock1/BasicBlock0/bn2/moving_variance"):
        tf1_weights.load_mat(small(), arrays)


def test_wrong_shape_is_named():
    arrays = {k: v.numpy() for k, v in tf1_weights.tf1_variables(small()).items()}
    student = ResNet((32, 32, 3), 10, "Student", width=0.5)
    with pytest.raises(ValueError, match="Student/conv0/weights.*shape"):
        tf1_weights.load_mat(student, arrays)
    arrays = {k: v.numpy() for k, v in tf1_weights.tf1_variables(small()).items()}
    arrays["Student/full/biases"] = np.zeros((1, 11))
    with pytest.raises(ValueError, match="Student/full/biases"):
        tf1_weights.load_mat(small(), arrays)


def test_teacher_from_keras_file(tmp_path):
    teacher = small("Teacher", num_blocks=1)
    path = str(tmp_path / "teacher.keras")
    teacher.save(path)
    fresh = small("Teacher", num_blocks=1)
    assert tf1_weights.load_weights(fresh, path) == len(teacher.weights)
    for va, vb in zip(teacher.weights, fresh.weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    with pytest.raises(ValueError, match="missing"):
        tf1_weights.load_weights(small("Teacher"), path)   # 5 blocks vs 1
