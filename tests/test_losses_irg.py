"""IRG's loss (Liu et al., CVPR 2019, as AberHu/Knowledge-Distillation-Zoo
`kd_losses/irg.py`) against a NumPy reference written from the paper's
definitions and the reference's choices (squared distances, normalised by
their maximum; the earlier stage pooled to the later one's size, the later
one's channels averaged in pairs), in PyTorch's NCHW layout with explicit
pairwise differences: values and gradients against finite differences, on
networks of different widths; the graph's invariances; the shapes it
refuses."""

import numpy as np
import pytest
import tensorflow as tf

from reference import numeric_gradient
from tf_kd.losses import relation

RNG = np.random.RandomState(19)


# -- The NumPy reference (NCHW, as the PyTorch code)

def np_edges(x, eps=1e-12):
    """Squared distances between every two examples, written as the
    differences themselves, floored, the diagonal 0, over the maximum."""
    x = x.reshape(len(x), -1)
    distance = np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), eps)
    distance[np.arange(len(x)), np.arange(len(x))] = 0
    return distance / distance.max()


def np_adaptive_pool(x, height, width):
    """`F.adaptive_avg_pool2d` of `[B, C, H, W]`, bin by bin."""
    out = np.zeros(x.shape[:2] + (height, width))
    h, w = x.shape[2:]
    for i in range(height):
        for j in range(width):
            rows = slice(i * h // height, -(-(i + 1) * h // height))
            cols = slice(j * w // width, -(-(j + 1) * w // width))
            out[:, :, i, j] = x[:, :, rows, cols].mean((2, 3))
    return out


def np_transformation(fm1, fm2, eps=1e-12):
    if fm1.shape[2:] != fm2.shape[2:]:
        fm1 = np_adaptive_pool(fm1, *fm2.shape[2:])
    if fm1.shape[1] < fm2.shape[1]:
        fm2 = (fm2[:, 0::2] + fm2[:, 1::2]) / 2
    distance = np.maximum(((fm1 - fm2) ** 2).reshape(len(fm1), -1).sum(1), eps)
    return distance / distance.max()


def np_irg(student, teacher, weights=(0.1, 5.0, 5.0)):
    """`student`, `teacher`: (fm1, fm2 in NCHW, pooled, logits)."""
    def mse(a, b):
        return np.mean((a - b) ** 2)
    (s1, s2, fs, zs), (t1, t2, ft, zt) = student, teacher
    vertex = mse(zs, zt)
    edge = (mse(np_edges(fs), np_edges(ft)) + mse(np_edges(s1), np_edges(t1))
            + mse(np_edges(s2), np_edges(t2))) / 3
    transformation = mse(np_transformation(s1, s2), np_transformation(t1, t2))
    return weights[0] * vertex + weights[1] * edge + weights[2] * transformation


def nchw(x):
    return np.transpose(x, (0, 3, 1, 2))


def tf_irg(student, teacher, weights=(0.1, 5.0, 5.0)):
    return relation.irg([tf.constant(x) for x in student], [tf.constant(x) for x in teacher],
                        weights)


def network_outputs(batch, sizes, widths, classes=4):
    """NHWC stage maps (after a ReLU), pooled vector and logits of a made-up
    network: `sizes`, `widths` of its last two stages."""
    (h1, h2), (c1, c2) = sizes, widths
    fm1 = np.maximum(RNG.randn(batch, h1, h1, c1), 0)
    fm2 = np.maximum(RNG.randn(batch, h2, h2, c2), 0)
    return [fm1, fm2, fm2.mean((1, 2)), RNG.randn(batch, classes)]


def as_reference(outputs):
    fm1, fm2, pooled, logits = outputs
    return [nchw(fm1), nchw(fm2), pooled, logits]


# (student sizes, widths), (teacher sizes, widths): both networks double their width and
# halve their size (the ResNets); a teacher twice the student's width; equal widths and
# sizes (the VGGs' last two stages); a pool that does not divide (5 -> 2, PyTorch's bins)
SHAPES = {
    "resnet, teacher twice as wide": (((4, 2), (3, 6)), ((4, 2), (5, 10))),
    "vgg-like, same width and size": (((2, 2), (4, 4)), ((4, 2), (3, 6))),
    "uneven pool": (((5, 2), (2, 4)), ((3, 3), (4, 4))),
}


@pytest.mark.parametrize("case", SHAPES)
def test_irg_value_and_gradients(case):
    (s_sizes, s_widths), (t_sizes, t_widths) = SHAPES[case]
    student = network_outputs(5, s_sizes, s_widths)
    teacher = network_outputs(5, t_sizes, t_widths)
    expected = np_irg(as_reference(student), as_reference(teacher))
    assert float(tf_irg(student, teacher)) == pytest.approx(expected, rel=1e-10)
    # each part on its own, with weights that differ from the defaults
    for weights in [(1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0), (0.3, 2.0, 7.0)]:
        assert float(tf_irg(student, teacher, weights)) == pytest.approx(
            np_irg(as_reference(student), as_reference(teacher), weights), rel=1e-10)

    variables = [tf.constant(x) for x in student]
    with tf.GradientTape() as tape:
        tape.watch(variables)
        value = relation.irg(variables, [tf.constant(x) for x in teacher])
    gradients = tape.gradient(value, variables)
    for i, gradient in enumerate(gradients):
        def reference(x, i=i):
            moved = list(student)
            moved[i] = x
            return np_irg(as_reference(moved), as_reference(teacher))
        np.testing.assert_allclose(gradient.numpy(), numeric_gradient(reference, student[i]),
                                   rtol=1e-5, atol=1e-9, err_msg=f"input {i}")


def test_edges_are_normalised_squared_distances():
    x = RNG.randn(6, 3, 3, 2)
    edges = relation.irg_edges(tf.constant(x)).numpy()
    np.testing.assert_allclose(edges, np_edges(nchw(x)), rtol=1e-12)
    assert edges.max() == 1 and np.all(np.diag(edges) == 0)
    np.testing.assert_allclose(edges, edges.T, rtol=1e-12)


def rigid(x, rng):
    """`x` `[B, ...]` rotated (a random orthogonal map of the flattened
    examples), scaled by 3 and shifted by one vector for all examples."""
    flat = x.reshape(len(x), -1)
    rotation, _ = np.linalg.qr(rng.randn(flat.shape[1], flat.shape[1]))
    return (3 * flat @ rotation + rng.randn(flat.shape[1])).reshape(x.shape)


def test_the_edge_term_sees_only_the_relations_between_examples():
    """The edges are the batch's distances over their maximum: a student
    whose features are the teacher's rotated, scaled and shifted has no edge
    loss, while its vertices (logits) still differ; permuting the batch of
    both networks alike leaves every term unchanged; with the student's
    outputs equal to the teacher's the loss is 0."""
    rng = np.random.RandomState(3)
    teacher = network_outputs(6, (4, 2), (3, 6))
    student = [rigid(x, rng) for x in teacher]
    assert float(tf_irg(student, teacher, (0, 1, 0))) == pytest.approx(0, abs=1e-12)
    assert float(tf_irg(student, teacher, (1, 0, 0))) > 1
    assert float(tf_irg(teacher, teacher)) == 0

    other = network_outputs(6, (4, 2), (2, 4))
    order = rng.permutation(6)
    assert float(tf_irg([x[order] for x in other], [x[order] for x in teacher])) == (
        pytest.approx(float(tf_irg(other, teacher)), rel=1e-12))
    # a permutation of one network's batch alone breaks the relations
    assert float(tf_irg([x[order] for x in other], teacher, (0, 1, 1))) != pytest.approx(
        float(tf_irg(other, teacher, (0, 1, 1))), rel=1e-3)


def test_the_transformation_averages_channel_pairs_and_pools():
    """NHWC channels `(2j, 2j + 1)` are the reference's `fm2[:, 0::2]` and
    `fm2[:, 1::2]`; the earlier map pooled to the later one's size."""
    fm1, fm2 = RNG.randn(4, 6, 6, 3), RNG.randn(4, 3, 3, 6)
    got = relation.irg_transformation(tf.constant(fm1), tf.constant(fm2)).numpy()
    np.testing.assert_allclose(got, np_transformation(nchw(fm1), nchw(fm2)), rtol=1e-12)
    assert got.max() == 1
    # a later map whose channel pairs average to the pooled earlier map: distance 0 (floored)
    pooled = fm1.reshape(4, 3, 2, 3, 2, 3).mean((2, 4))
    spread = RNG.randn(*pooled.shape)
    twins = np.stack([pooled + spread, pooled - spread], -1).reshape(4, 3, 3, 6)
    twins[0] += 1          # one example apart, so that the maximum is not the floor
    distances = relation.irg_transformation(tf.constant(fm1), tf.constant(twins)).numpy()
    assert distances[0] == 1 and np.all(distances[1:] < 1e-10)


@pytest.mark.parametrize("shapes, says", [
    (((2, 4, 4, 8), (2, 2, 2, 24)), "24 channels and the earlier 8"),
    (((2, 4, 4, 8), (2, 2, 2, 4)), "4 channels and the earlier 8"),
    (((2, 2, 2, 8), (2, 4, 4, 16)), "smaller than the later one"),
    (((2, 8), (2, 2, 2, 16)), "two feature maps"),
])
def test_shapes_the_transformation_cannot_relate(shapes, says):
    assert says in relation.irg_transformation_problem(*shapes)
    with pytest.raises(ValueError, match=says):
        relation.irg_transformation(*(tf.zeros(s) for s in shapes))
    assert relation.irg_transformation_problem((2, 4, 4, 8), (2, 2, 2, 16)) is None
    assert relation.irg_transformation_problem((2, 4, 4, 8), (2, 4, 4, 8)) is None
