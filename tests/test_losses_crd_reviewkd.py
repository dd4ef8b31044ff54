"""CRD's and ReviewKD's losses and modules against NumPy references written
from the PyTorch code (RepDistiller `crd/criterion.py`, `crd/memory.py`;
ReviewKD `CIFAR-100/model/reviewkd.py`): values, gradients against finite
differences, CRD's momentum update of its memory banks (on the batch's
entries only), the ABFs' shapes, parameters and initialisation, and the
hierarchical context loss's pyramid."""

import numpy as np
import pytest
import tensorflow as tf

from reference import numeric_gradient
from tf_kd.losses import multiple, relation

RNG = np.random.RandomState(21)


def normalize(x):
    return x / np.sqrt((x ** 2).sum(-1, keepdims=True))


# -- CRD, written from `ContrastMemory.forward` and `ContrastLoss.forward`

def np_contrast_loss(x, n_data, eps=1e-7):
    m = x.shape[1] - 1
    pn = 1 / n_data
    log_d1 = np.log(x[:, 0] / (x[:, 0] + m * pn + eps))
    log_d0 = np.log(m * pn / (x[:, 1:] + m * pn + eps))
    return -(log_d1.sum() + log_d0.sum()) / x.shape[0]


def np_scores(memory, v, idx, temperature, z=None):
    """`exp(bmm(memory[idx], v) / T)`, divided by `Z` (set from this batch
    when None); returns the scores and `Z`."""
    out = np.exp(np.einsum("bkd,bd->bk", memory[idx], v) / temperature)
    z = out.mean() * len(memory) if z is None else z
    return out / z, z


def np_update(memory, v, y, momentum):
    memory = memory.copy()
    memory[y] = normalize(memory[y] * momentum + v * (1 - momentum))
    return memory


def contrast_memory(size=40, feat_dim=6, temperature=0.07, momentum=0.5, seed=0):
    tf.keras.utils.set_random_seed(seed)
    return relation.ContrastMemory(size, feat_dim, temperature, momentum)


def test_contrast_loss():
    scores = RNG.uniform(1e-4, 2e-3, (4, 9))
    value = relation.contrast_loss(tf.constant(scores), 100)
    np.testing.assert_allclose(value.numpy(), np_contrast_loss(scores, 100), rtol=1e-10)
    x = tf.constant(scores)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = relation.contrast_loss(x, 100)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(),
                               numeric_gradient(lambda s: np_contrast_loss(s, 100), scores,
                                                h=1e-9), rtol=1e-5)


def test_memory_banks_start_uniform_in_the_references_bound():
    memory = contrast_memory(size=500, feat_dim=12)
    bound = 1 / np.sqrt(12 / 3)
    for bank in (memory.memory_s.numpy(), memory.memory_t.numpy()):
        assert bank.shape == (500, 12) and np.abs(bank).max() <= bound
        assert bank.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
    assert not memory.trainable_weights and float(memory.z_s) == float(memory.z_t) == -1


def test_memory_scores_set_z_once_and_update_with_momentum():
    """Two batches through `ContrastMemory`: the scores against the other
    network's bank, `Z` from the first batch kept for the second, and after
    each batch its entries (and only they) at `normalize(0.3 m + 0.7 v)`
    (momentum 0.3, so that the two weights differ)."""
    memory = contrast_memory(momentum=0.3)
    bank_s, bank_t = memory.memory_s.numpy(), memory.memory_t.numpy()
    z_s = z_t = None
    for step in range(2):
        v_s, v_t = normalize(RNG.randn(5, 6)), normalize(RNG.randn(5, 6))
        y = RNG.choice(40, 5, replace=False)
        idx = np.concatenate([y[:, None], RNG.randint(0, 40, (5, 7))], 1)
        out_s, out_t = memory(tf.constant(v_s, tf.float32), tf.constant(v_t, tf.float32),
                              tf.constant(y), tf.constant(idx))
        expected_s, z_s = np_scores(bank_t, v_s, idx, 0.07, z_s)   # out_v1: memory_v2, v1
        expected_t, z_t = np_scores(bank_s, v_t, idx, 0.07, z_t)   # out_v2: memory_v1, v2
        np.testing.assert_allclose(out_s.numpy(), expected_s, rtol=2e-5)
        np.testing.assert_allclose(out_t.numpy(), expected_t, rtol=2e-5)
        np.testing.assert_allclose([float(memory.z_s), float(memory.z_t)], [z_s, z_t],
                                   rtol=2e-5)
        new_s, new_t = np_update(bank_s, v_s, y, 0.3), np_update(bank_t, v_t, y, 0.3)
        np.testing.assert_allclose(memory.memory_s.numpy()[y], new_s[y], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(memory.memory_t.numpy()[y], new_t[y], rtol=1e-5, atol=1e-7)
        rest = np.setdiff1d(np.arange(40), y)
        np.testing.assert_array_equal(memory.memory_s.numpy()[rest], bank_s[rest])
        np.testing.assert_array_equal(memory.memory_t.numpy()[rest], bank_t[rest])
        np.testing.assert_allclose(np.linalg.norm(memory.memory_s.numpy()[y], axis=1), 1,
                                   rtol=1e-6)
        bank_s, bank_t = memory.memory_s.numpy(), memory.memory_t.numpy()


def test_crd_value_and_gradient():
    """`crd` is the two contrast losses of the scores; its gradient in the
    student's embedding (`Z` set) matches finite differences."""
    memory = contrast_memory()
    memory.z_s.assign(3.0)
    memory.z_t.assign(5.0)
    bank_s, bank_t = memory.memory_s.numpy(), memory.memory_t.numpy()
    v_s, v_t = normalize(RNG.randn(3, 6)), normalize(RNG.randn(3, 6))
    y = np.array([4, 17, 30])
    idx = np.concatenate([y[:, None], RNG.randint(0, 40, (3, 5))], 1)
    value = relation.crd(tf.constant(v_s, tf.float32), tf.constant(v_t, tf.float32),
                         tf.constant(y), tf.constant(idx), memory)
    expected = (np_contrast_loss(np_scores(bank_t, v_s, idx, 0.07, 3.0)[0], 40)
                + np_contrast_loss(np_scores(bank_s, v_t, idx, 0.07, 5.0)[0], 40))
    assert float(value) == pytest.approx(expected, rel=1e-5)

    memory.memory_t.assign(bank_t)
    x = tf.constant(v_s, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = relation.contrast_loss(memory.scores(memory.memory_t, x, idx, memory.z_s), 40)
    reference = numeric_gradient(
        lambda v: np_contrast_loss(np_scores(bank_t, v, idx, 0.07, 3.0)[0], 40), v_s)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), reference, rtol=1e-3, atol=1e-4)


def test_embed_is_linear_then_l2_normalised():
    tf.keras.utils.set_random_seed(0)
    embed = relation.Embed(8)
    embed.build((None, 2, 2, 5))                   # flattened: 20 inputs
    kernel, bias = embed.linear.kernel.numpy(), embed.linear.bias.numpy()
    assert kernel.shape == (20, 8)
    assert np.abs(kernel).max() <= 1 / np.sqrt(20) and np.abs(bias).max() <= 1 / np.sqrt(20)
    x = RNG.randn(3, 2, 2, 5).astype(np.float32)
    np.testing.assert_allclose(embed(x).numpy(), normalize(x.reshape(3, -1) @ kernel + bias),
                               rtol=1e-5)


# -- ReviewKD, written from `hcl`, `ABF.forward` and PyTorch's operators

def np_adaptive_avg_pool(x, size):
    """`F.adaptive_avg_pool2d` on NHWC, bin by bin."""
    b, h, w, c = x.shape
    out = np.zeros([b, size, size, c])
    for i in range(size):
        for j in range(size):
            rows = slice(int(np.floor(i * h / size)), int(np.ceil((i + 1) * h / size)))
            cols = slice(int(np.floor(j * w / size)), int(np.ceil((j + 1) * w / size)))
            out[:, i, j] = x[:, rows, cols].mean((1, 2))
    return out


def np_hcl(fstudent, fteacher):
    loss_all = 0.0
    for fs, ft in zip(fstudent, fteacher):
        h = fs.shape[1]
        loss = ((fs - ft) ** 2).mean()
        cnt, tot = 1.0, 1.0
        for level in [4, 2, 1]:
            if level >= h:
                continue
            cnt /= 2.0
            loss += ((np_adaptive_avg_pool(fs, level) - np_adaptive_avg_pool(ft, level))
                     ** 2).mean() * cnt
            tot += cnt
        loss_all += loss / tot
    return loss_all


def np_nearest(x, size):
    """`F.interpolate(mode='nearest')`: source `floor(i * in / out)`."""
    rows = np.floor(np.arange(size[0]) * x.shape[1] / size[0]).astype(int)
    cols = np.floor(np.arange(size[1]) * x.shape[2] / size[1]).astype(int)
    return x[:, rows][:, :, cols]


def np_batch_norm(x, gamma, beta, eps=1e-5):
    """Training mode: the batch's biased variance."""
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def np_conv3x3(x, kernel):
    """`Conv2d(3, padding=1, bias=False)`, kernel `[3, 3, in, out]`."""
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    h, w = x.shape[1:3]
    return sum(np.einsum("bhwi,io->bhwo", padded[:, dy:dy + h, dx:dx + w], kernel[dy, dx])
               for dy in range(3) for dx in range(3))


def np_abf(abf, x, y=None, out_size=None):
    """`ABF.forward` with the layer's weights (NHWC)."""
    weights = {w.path.split("/", 1)[1]: w.numpy() for w in abf.weights}
    x = np_batch_norm(x @ weights["conv1/kernel"][0, 0], weights["bn1/gamma"],
                      weights["bn1/beta"])
    if y is not None:
        y = np_nearest(y, x.shape[1:3])
        z = np.concatenate([x, y], -1) @ weights["att_conv/kernel"][0, 0] + weights[
            "att_conv/bias"]
        z = 1 / (1 + np.exp(-z))
        x = x * z[..., :1] + y * z[..., 1:]
    x = np_nearest(x, out_size)
    return np_batch_norm(np_conv3x3(x, weights["conv2/kernel"]), weights["bn2/gamma"],
                         weights["bn2/beta"]), x


@pytest.mark.parametrize("size", [(8, 8), (3, 5)])     # up and down
def test_nearest_resize_is_pytorchs(size):
    x = RNG.randn(2, 4, 4, 3).astype(np.float32)
    np.testing.assert_array_equal(multiple.nearest_resize(x, size).numpy(), np_nearest(x, size))


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_adaptive_average_pool(size):
    x = RNG.randn(2, 7, 9, 3)
    np.testing.assert_allclose(multiple.adaptive_average_pool(tf.constant(x, tf.float32),
                                                              size).numpy(),
                               np_adaptive_avg_pool(x, size), rtol=1e-5, atol=1e-6)


def test_hcl_pyramid():
    """Heights 8 (levels 4, 2, 1: weights 1, 1/2, 1/4, 1/8 over 15/8), 4
    (levels 2, 1), 7 (overlapping bins) and the pooled 1x1 (MSE alone)."""
    shapes = [(2, 8, 8, 3), (2, 4, 4, 5), (2, 7, 7, 2), (2, 1, 1, 6)]
    fs = [RNG.randn(*s) for s in shapes]
    ft = [RNG.randn(*s) for s in shapes]
    value = multiple.hcl([tf.constant(f, tf.float32) for f in fs],
                         [tf.constant(f, tf.float32) for f in ft])
    assert float(value) == pytest.approx(np_hcl(fs, ft), rel=1e-5)
    f = fs[0]
    by_hand = (((f - ft[0]) ** 2).mean() + sum(
        w * ((np_adaptive_avg_pool(f, l) - np_adaptive_avg_pool(ft[0], l)) ** 2).mean()
        for l, w in ((4, 1 / 2), (2, 1 / 4), (1, 1 / 8)))) / (15 / 8)
    assert np_hcl(fs[:1], ft[:1]) == pytest.approx(by_hand, rel=1e-12)
    assert np_hcl(fs[3:], ft[3:]) == pytest.approx(((fs[3] - ft[3]) ** 2).mean())


def test_hcl_gradient():
    fs, ft = [RNG.randn(1, 4, 4, 2), RNG.randn(1, 1, 1, 3)], [RNG.randn(1, 4, 4, 2),
                                                              RNG.randn(1, 1, 1, 3)]
    x = tf.constant(fs[0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = multiple.hcl([x, tf.constant(fs[1])], [tf.constant(f) for f in ft])
    reference = numeric_gradient(lambda f: np_hcl([f, fs[1]], ft), fs[0])
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), reference, rtol=1e-6, atol=1e-9)


def abf_parameters(in_channels, mid, out, fuse):
    """Trainable parameters of the reference's ABF: conv1, bn1, conv2, bn2
    (weight and bias each), and att_conv with its bias."""
    return (in_channels * mid + 2 * mid + 9 * mid * out + 2 * out
            + (2 * mid * 2 + 2 if fuse else 0))


def test_review_fusions_shapes_parameters_and_initialisation():
    """resnet8x4 -> resnet32x4's widths at 1/8 (8, 16, 32 and the pooled
    32) against a teacher of other widths and half the sizes."""
    tf.keras.utils.set_random_seed(0)
    student = [(None, 32, 32, 8), (None, 16, 16, 16), (None, 8, 8, 32), (None, 32)]
    teacher = [(None, 16, 16, 12), (None, 8, 8, 24), (None, 4, 4, 48), (None, 48)]
    abfs = multiple.review_fusions(student, teacher)
    assert [abf.fuse for abf in abfs] == [True, True, True, False]
    assert all(abf.mid_channels == 32 for abf in abfs)     # min(512, the pooled width)
    for abf, s, t in zip(abfs, student, teacher):
        assert abf.out_channels == t[-1]
        assert sum(int(np.prod(w.shape)) for w in abf.trainable_weights) == abf_parameters(
            s[-1], 32, t[-1], abf.fuse)
        assert len(abf.non_trainable_weights) == 4         # two batch norms' statistics
        for conv in (abf.conv1, abf.conv2):                # kaiming_uniform_(a=1)
            kernel = conv.kernel.numpy()
            fan_in = np.prod(kernel.shape[:3])
            assert np.abs(kernel).max() <= np.sqrt(3 / fan_in)
        if abf.fuse:                                       # PyTorch's default
            for w in (abf.att_conv.kernel, abf.att_conv.bias):
                assert np.abs(w.numpy()).max() <= 1 / np.sqrt(64)
    assert abfs[2].conv2.kernel.numpy().std() == pytest.approx(np.sqrt(1 / 288), rel=0.05)
    assert multiple.review_fusions([(None, 8, 8, 1024), (None, 1024)],
                                   [(None, 8, 8, 4), (None, 4)])[0].mid_channels == 512


def test_review_against_the_reference_forward():
    """The review of three student features (deepest the pooled one) into
    the teacher's widths and sizes (one smaller, one larger), ABF by ABF."""
    tf.keras.utils.set_random_seed(1)
    student = [RNG.randn(4, 8, 8, 3), RNG.randn(4, 4, 4, 5), RNG.randn(4, 6)]
    out_sizes = [(4, 4), (8, 8), (1, 1)]
    teacher_shapes = [(4, 4, 4, 7), (4, 8, 8, 2), (4, 9)]
    abfs = multiple.review_fusions([s.shape for s in student], teacher_shapes)
    outputs = multiple.review([tf.constant(s, tf.float32) for s in student], abfs, out_sizes,
                              training=True)
    y, residual = np_abf(abfs[2], student[2][:, None, None, :], out_size=(1, 1))
    expected = [y]
    for i in (1, 0):
        y, residual = np_abf(abfs[i], student[i], residual, out_sizes[i])
        expected.insert(0, y)
    for output, e, t in zip(outputs, expected, teacher_shapes):
        assert output.shape == (4, *(t[1:3] if len(t) == 4 else (1, 1)), t[-1])
        np.testing.assert_allclose(output.numpy(), e, rtol=1e-3, atol=1e-4)
