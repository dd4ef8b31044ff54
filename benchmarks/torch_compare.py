"""The port against PyTorch on the same networks and steps, timed side by side.

    pip install torch        # optional, for this benchmark only
    python benchmarks/torch_compare.py --out=benchmarks/results/torch_compare.md

PyTorch implementations, written for this benchmark, of the TF1 ResNet8
student and ResNet32 teacher (`nets/resnet.py`: 3x3 convolutions without
bias, batch norm with decay 0.9 and epsilon 1e-5, 1x1 convolution + batch
norm shortcuts, global pooling, dense layer with bias) and of the student
step (CE + weight decay 5e-4 on every parameter, TF1's Nesterov momentum,
which is `torch.optim.SGD(momentum=0.9, nesterov=True)`), Soft_logits
(`0.7 CE + 0.3 KL(T=4)`), AT (beta 1e3 on the three stage features) and RKD
(25 distance + 50 angle on the pooled vectors), with the teacher in
inference mode without gradients. The same workloads on the port are its
compiled `train_step`s (a teacher forward pass: the compiled teacher call),
with the networks' batch norm as Keras 3 runs it and as
`tf_kd.layers.BatchNormalization` (fused) runs it. PyTorch runs eager in
channels_last memory format and, if `torch.compile` works here, compiled.

The methods added since TF1 are the PyTorch references' steps on the same
networks, written for this benchmark from the files `docs/methods.md`
names: KD (`0.1 CE + 0.9 T^2 KL(T=4)`, RepDistiller `DistillKL`), DKD
(mdistiller `dkd_loss`, CE + TCKD + 8 NCKD at T = 4, past the warm-up),
DIST (`CE + 2 DIST`, tau = 4), PKT (`CE + 30000 PKT` on the pooled vectors),
SP (`CE + 3000 SP` on the last stage), CC (`CE + 0.02 CC` on two trained
`LinearEmbed`s of the pooled vectors), CRD (`CE + 0.8 CRD`: two trained
`Embed`s, `ContrastMemory` over a 50,000-image training set, 16384
negatives, its momentum update; the contrast indices come with the batch,
as from `CIFAR100InstanceSample`'s loader, while the port draws its own in
the step), ReviewKD (`CE + HCL` past the warm-up, the student's stages and
pooled vector through `ABF`s, the teacher's pre-activation stages) and IRG
(`CE + IRG`, Knowledge-Distillation-Zoo `kd_losses/irg.py` with 0.1, 5, 5
on the last two stages, the pooled vector and the logits). The methods'
modules train with the student, under the same weight decay.

For each workload every variant is warmed up, then all are timed in
interleaved rounds on one fixed batch (TF1 shapes: 128 x 32x32x3, 100
classes), one step of each variant per round; a figure is the median over
`--steps` steps, and the table gives each as a ratio to PyTorch eager
channels_last: of the wall-clock time and of the process's CPU time. On a
machine whose cores other jobs share, the CPU time is the steadier measure
of the work a step does; with `--threads=1` it is the single-core time.
"""

import argparse
import contextlib
import functools
import math
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# oneDNN's kernels on, as train.py runs (tf_kd/cli/__init__.py), unless the environment says
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.machine import describe  # noqa: E402
from benchmarks.variants import StudentStep, build, compiled  # noqa: E402
from tf_kd import files  # noqa: E402
from tf_kd.distillers import DISTILLERS  # noqa: E402

WEIGHT_DECAY = 5e-4
CHANNELS, STRIDES = [32, 64, 128, 256], [1, 2, 2]


# -- PyTorch networks ---------------------------------------------------------

def bn(channels):
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)   # TF1 decay 0.9


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn0 = bn(cout)
        self.conv1 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn1 = bn(cout)
        self.shortcut = None
        if stride > 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))

    def forward(self, x):
        out = self.bn1(self.conv1(F.relu(self.bn0(self.conv0(x)))))
        pre = (self.shortcut(x) if self.shortcut is not None else x) + out
        return F.relu(pre), pre


class ResNet(nn.Module):
    """`nets.ResNet` in PyTorch: dict of stage features, pooled vector, logits."""

    def __init__(self, num_blocks, num_classes=100):
        super().__init__()
        self.conv0 = nn.Conv2d(3, CHANNELS[0], 3, 1, 1, bias=False)
        self.bn0 = bn(CHANNELS[0])
        blocks, cin = [], CHANNELS[0]
        for cout, stride in zip(CHANNELS[1:], STRIDES):
            for j in range(num_blocks):
                blocks.append(BasicBlock(cin, cout, stride if j == 0 else 1))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.num_blocks = num_blocks
        self.full = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.relu(self.bn0(self.conv0(x)))
        feats, preacts = [], []
        for i, block in enumerate(self.blocks):
            x, pre = block(x)
            if (i + 1) % self.num_blocks == 0:
                feats.append(x)
                preacts.append(pre)
        pool = x.mean((2, 3))
        return {"feats": feats, "preacts": preacts, "pool": pool, "logits": self.full(pool)}


# -- PyTorch losses (the port's formulas) --------------------------------------

def kl(p_logits, q_logits):
    return (F.softmax(p_logits, -1) * (F.log_softmax(p_logits, -1)
                                       - F.log_softmax(q_logits, -1))).sum(-1).mean()


def attention_map(f):
    return F.normalize(f.pow(2).mean(1).flatten(1), dim=1)


def huber(x, y):
    return F.smooth_l1_loss(x, y, beta=1.0)


def distance_potential(x):
    square = x.pow(2).sum(-1)
    d = (square[:, None] + square[None] - 2 * x @ x.T).clamp_min(1e-12).sqrt()
    return d / (d.sum() / (d > 0).sum() + 1e-8)


def angle_potential(x):
    e = F.normalize(x[None] - x[:, None], dim=2)
    return e @ e.transpose(1, 2)


def rkd(s, t):
    s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
    return (25 * huber(distance_potential(s), distance_potential(t))
            + 50 * huber(angle_potential(s), angle_potential(t)))


LOSSES = {
    "student step": lambda s, t, y: F.cross_entropy(s["logits"], y),
    "Soft_logits": lambda s, t, y: (0.7 * F.cross_entropy(s["logits"], y)
                                    + 0.3 * kl(t["logits"] / 4, s["logits"] / 4)),
    "AT": lambda s, t, y: F.cross_entropy(s["logits"], y) + sum(
        (attention_map(a) - attention_map(b)).pow(2).mean() * 1e3 / 2
        for a, b in zip(s["feats"], t["feats"])),
    "RKD": lambda s, t, y: F.cross_entropy(s["logits"], y) + rkd(s["pool"], t["pool"]),
}


# -- PyTorch steps of the methods added since TF1, from their references ---------

def distill_kl(s, t, temperature):
    """RepDistiller's `DistillKL`: `KL(p_t || p_s)` summed, times T^2 over B."""
    log_p_s = F.log_softmax(s / temperature, 1)
    p_t = F.softmax(t / temperature, 1)
    return F.kl_div(log_p_s, p_t, reduction="sum") * temperature ** 2 / len(s)


def dkd(s, t, y, alpha=1.0, beta=8.0, temperature=4.0):
    """mdistiller's `dkd_loss`: the target / non-target split of the KL."""
    gt = torch.zeros_like(s).scatter_(1, y[:, None], 1).bool()
    other = ~gt

    def binary(p):
        return torch.cat([(p * gt).sum(1, keepdim=True), (p * other).sum(1, keepdim=True)], 1)
    p_s, p_t = F.softmax(s / temperature, 1), F.softmax(t / temperature, 1)
    tckd = F.kl_div(torch.log(binary(p_s)), binary(p_t), reduction="sum")
    nckd = F.kl_div(F.log_softmax(s / temperature - 1000.0 * gt, 1),
                    F.softmax(t / temperature - 1000.0 * gt, 1), reduction="sum")
    return (alpha * tckd + beta * nckd) * temperature ** 2 / len(s)


def pearson(a, b, eps=1e-8):
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist(s, t, beta=1.0, gamma=1.0, tau=4.0):
    """image_classification_sota's `DIST`: inter- and intra-class Pearson."""
    y_s, y_t = (s / tau).softmax(1), (t / tau).softmax(1)
    inter = 1 - pearson(y_s, y_t).mean()
    intra = 1 - pearson(y_s.T, y_t.T).mean()
    return tau ** 2 * (beta * inter + gamma * intra)


def pkt(s, t, eps=1e-7):
    """RepDistiller's `PKT.cosine_similarity_loss`."""
    def probabilities(x):
        x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + eps)
        x = torch.nan_to_num(x)
        similarity = (x @ x.T + 1) / 2
        return similarity / similarity.sum(1, keepdim=True)
    p_s, p_t = probabilities(s), probabilities(t)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


def similarity(s, t):
    """RepDistiller's `Similarity.similarity_loss`."""
    batch = len(s)
    g_s = F.normalize(s.reshape(batch, -1) @ s.reshape(batch, -1).T)
    g_t = F.normalize(t.reshape(batch, -1) @ t.reshape(batch, -1).T)
    return (g_t - g_s).pow(2).sum() / batch ** 2


def correlation(s, t):
    """RepDistiller's `Correlation` (CC)."""
    delta = (s - t).abs()
    return (delta[:-1] * delta[1:]).sum(1).mean()


class Embed(nn.Module):
    """RepDistiller's `LinearEmbed` (CC) and, l2-normalised, CRD's `Embed`."""

    def __init__(self, dim_in, dim_out=128, normalize=False):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.normalize = normalize

    def forward(self, x):
        x = self.linear(x.reshape(len(x), -1))
        return x / x.pow(2).sum(1, keepdim=True).sqrt() if self.normalize else x


class ContrastMemory(nn.Module):
    """RepDistiller's `crd/memory.py` `ContrastMemory`, for given contrast
    indices: scores against the other network's bank, `Z` from the first
    batch, then the momentum update of the batch's entries."""

    def __init__(self, feat_dim, n_data, temperature=0.07, momentum=0.5):
        super().__init__()
        bound = 1 / math.sqrt(feat_dim / 3)
        self.register_buffer("memory_s", torch.rand(n_data, feat_dim) * 2 * bound - bound)
        self.register_buffer("memory_t", torch.rand(n_data, feat_dim) * 2 * bound - bound)
        self.temperature, self.momentum, self.z_s, self.z_t = temperature, momentum, None, None

    def scores(self, memory, v, contrast_idx):
        entries = memory.index_select(0, contrast_idx.reshape(-1)).detach()
        entries = entries.reshape(*contrast_idx.shape, -1)
        return torch.exp(torch.bmm(entries, v[:, :, None])[..., 0] / self.temperature)

    def forward(self, v_s, v_t, idx, contrast_idx):
        out_t = self.scores(self.memory_s, v_t, contrast_idx)
        out_s = self.scores(self.memory_t, v_s, contrast_idx)
        if self.z_s is None:
            self.z_s = out_s.mean().item() * len(self.memory_s)
            self.z_t = out_t.mean().item() * len(self.memory_s)
        with torch.no_grad():
            for memory, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
                moved = memory.index_select(0, idx) * self.momentum + v * (1 - self.momentum)
                memory.index_copy_(0, idx, moved / moved.pow(2).sum(1, keepdim=True).sqrt())
        return out_s / self.z_s, out_t / self.z_t


def contrast_loss(x, n_data, eps=1e-7):
    """RepDistiller's `ContrastLoss` (Eq. 18)."""
    m = x.shape[1] - 1
    noise = m / n_data
    log_d1 = torch.log(x[:, 0] / (x[:, 0] + noise + eps))
    log_d0 = torch.log(noise / (x[:, 1:] + noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / len(x)


class ABF(nn.Module):
    """ReviewKD's attention-based fusion (`CIFAR-100/model/reviewkd.py`)."""

    def __init__(self, in_channels, mid_channels, out_channels, fuse):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False),
                                   nn.BatchNorm2d(mid_channels))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_channels, out_channels, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(out_channels))
        self.att_conv = (nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid())
                         if fuse else None)
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x, residual=None, size=None, out_size=None):
        x = self.conv1(x)
        if self.att_conv is not None:
            residual = F.interpolate(residual, (size, size), mode="nearest")
            attention = self.att_conv(torch.cat([x, residual], 1))
            x = x * attention[:, :1] + residual * attention[:, 1:]
        if x.shape[-1] != out_size:
            x = F.interpolate(x, (out_size, out_size), mode="nearest")
        return self.conv2(x), x


def hcl(student_feats, teacher_feats):
    """ReviewKD's hierarchical context loss."""
    total = 0.0
    for fs, ft in zip(student_feats, teacher_feats):
        loss, weight, weights = F.mse_loss(fs, ft), 1.0, 1.0
        for level in (4, 2, 1):
            if level >= fs.shape[2]:
                continue
            weight /= 2
            loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(fs, level),
                                              F.adaptive_avg_pool2d(ft, level))
            weights += weight
        total = total + loss / weights
    return total


def irg_edges(x, eps=1e-12):
    x = x.reshape(len(x), -1)
    square = x.pow(2).sum(1)
    distance = (square[None] + square[:, None] - 2 * x @ x.T).clamp(min=eps)
    distance = distance.clone()
    distance[range(len(x)), range(len(x))] = 0
    return distance / distance.max()


def irg_transformation(fm1, fm2, eps=1e-12):
    if fm1.shape[2] > fm2.shape[2]:
        fm1 = F.adaptive_avg_pool2d(fm1, fm2.shape[2:])
    if fm1.shape[1] < fm2.shape[1]:
        fm2 = (fm2[:, 0::2] + fm2[:, 1::2]) / 2
    distance = (fm1.reshape(len(fm1), -1) - fm2.reshape(len(fm2), -1)).pow(2).sum(1)
    distance = distance.clamp(min=eps)
    return distance / distance.max()


def irg(s, t, weights=(0.1, 5.0, 5.0)):
    """Knowledge-Distillation-Zoo's `IRG` on `rb2`, `rb3`, `feat`, `out`."""
    (s1, s2), (t1, t2) = s["feats"][-2:], t["feats"][-2:]
    vertex = F.mse_loss(s["logits"], t["logits"])
    edge = (F.mse_loss(irg_edges(s["pool"]), irg_edges(t["pool"]))
            + F.mse_loss(irg_edges(s1), irg_edges(t1))
            + F.mse_loss(irg_edges(s2), irg_edges(t2))) / 3
    transformation = F.mse_loss(irg_transformation(s1, s2), irg_transformation(t1, t2))
    return weights[0] * vertex + weights[1] * edge + weights[2] * transformation


N_DATA, NCE_K = 50000, 16384     # CRD: CIFAR-100's training set, RepDistiller's --nce_k


def crd_labels(labels):
    """The training split's labels (100 classes), the batch's images first."""
    train_labels = np.arange(N_DATA) % 100
    train_labels[:len(labels)] = labels
    return train_labels


def contrast_indices(labels, seed=0):
    """`[B, 1 + NCE_K]` as `CIFAR100InstanceSample(mode='exact')` hands a
    batch of the first B images: each image's index, then NCE_K images of
    the other classes drawn without replacement."""
    rng = np.random.RandomState(seed)
    train_labels = crd_labels(labels)
    rows = []
    for index, label in enumerate(labels):
        others = np.flatnonzero(train_labels != label)
        rows.append(np.concatenate([[index], rng.choice(others, NCE_K, replace=False)]))
    return torch.from_numpy(np.stack(rows).astype("int64"))


def torch_method(workload, labels):
    """`(modules, loss(student, teacher, labels))` of a workload: its
    trainable modules (trained with the student) and its objective."""
    ce = F.cross_entropy
    width = CHANNELS[-1]
    if workload in LOSSES:
        return [], LOSSES[workload]
    if workload == "KD":
        return [], lambda s, t, y: 0.1 * ce(s["logits"], y) + 0.9 * distill_kl(
            s["logits"], t["logits"], 4.0)
    if workload == "DKD":
        return [], lambda s, t, y: ce(s["logits"], y) + dkd(s["logits"], t["logits"], y)
    if workload == "DIST":
        return [], lambda s, t, y: ce(s["logits"], y) + 2.0 * dist(s["logits"], t["logits"])
    if workload == "PKT":
        return [], lambda s, t, y: ce(s["logits"], y) + 30000 * pkt(s["pool"], t["pool"])
    if workload == "SP":
        return [], lambda s, t, y: ce(s["logits"], y) + 3000 * similarity(s["feats"][-1],
                                                                          t["feats"][-1])
    if workload == "CC":
        embed_s, embed_t = Embed(width), Embed(width)
        return [embed_s, embed_t], lambda s, t, y: ce(s["logits"], y) + 0.02 * correlation(
            embed_s(s["pool"]), embed_t(t["pool"]))
    if workload == "CRD":
        embed_s, embed_t = Embed(width, normalize=True), Embed(width, normalize=True)
        memory = ContrastMemory(128, N_DATA)
        idx = torch.arange(len(labels))
        contrast_idx = contrast_indices(labels)

        def crd_loss(s, t, y):
            out_s, out_t = memory(embed_s(s["pool"]), embed_t(t["pool"]), idx, contrast_idx)
            return ce(s["logits"], y) + 0.8 * (contrast_loss(out_s, N_DATA)
                                               + contrast_loss(out_t, N_DATA))
        return [embed_s, embed_t, memory], crd_loss
    if workload == "ReviewKD":
        # `build_review_kd`'s lists for these networks: the student's stages and pooled
        # vector, the teacher's widths, sizes deepest first
        in_channels = CHANNELS[1:] + [width]
        abfs = nn.ModuleList(ABF(c, min(512, width), c, i < len(in_channels) - 1)
                             for i, c in enumerate(in_channels))[::-1]
        shapes = [1, 8, 16, 32]

        def review_loss(s, t, y):
            feats = s["feats"][::-1]
            x = [s["pool"][:, :, None, None], *feats]
            out, residual = abfs[0](x[0], out_size=shapes[0])
            results = [out]
            for feature, abf, size in zip(x[1:], abfs[1:], shapes[1:]):
                out, residual = abf(feature, residual, size, size)
                results.insert(0, out)
            teacher = [*t["preacts"], t["pool"][:, :, None, None]]
            return ce(s["logits"], y) + 1.0 * hcl(results, teacher)
        return [abfs], review_loss
    if workload == "IRG":
        return [], lambda s, t, y: ce(s["logits"], y) + irg(s, t)
    raise ValueError(f"unknown workload {workload!r}")


def torch_step(workload, batch, compile_=False, channels_last=True):
    """A training step (or, for `"teacher forward"`, an inference forward
    pass of the teacher) in PyTorch, as a function of nothing."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    images = torch.from_numpy(np.transpose(batch[0], (0, 3, 1, 2))).contiguous(
        memory_format=fmt)
    labels = torch.from_numpy(batch[1].astype("int64"))
    teacher = ResNet(5).to(memory_format=fmt).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    if workload == "teacher forward":
        forward = torch.compile(teacher) if compile_ else teacher

        def run():
            with torch.no_grad():
                forward(images)["logits"].sum().item()
        return run

    student = ResNet(1).to(memory_format=fmt).train()
    modules, loss_fn = torch_method(workload, batch[1])
    for module in modules:
        module.to(memory_format=fmt).train()
    parameters = [p for m in [student, *modules] for p in m.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=0.1, momentum=0.9, nesterov=True,
                                weight_decay=WEIGHT_DECAY)
    needs_teacher = workload != "student step"

    def loss_of(x, y):
        t = None
        if needs_teacher:
            with torch.no_grad():
                t = teacher(x)
        return loss_fn(student(x), t, y)

    loss_of = torch.compile(loss_of) if compile_ else loss_of

    def run():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(images, labels)
        loss.backward()
        optimizer.step()
        loss.item()
    return run


# -- the port -------------------------------------------------------------------

class TeacherCall(StudentStep):
    """The compiled teacher call (`teacher_outputs`) alone."""
    needs_teacher = True

    def train_step(self, data):
        images, _ = data
        return {"logits": tf.reduce_mean(self.teacher_outputs(images)["logits"])}


NEW_METHODS = ["KD", "DKD", "DIST", "PKT", "SP", "CC", "CRD", "ReviewKD", "IRG"]
PORT = {"student step": StudentStep, "teacher forward": TeacherCall,
        "Soft_logits": DISTILLERS["Soft_logits"], "AT": DISTILLERS["AT"],
        "RKD": DISTILLERS["RKD"], **{key: DISTILLERS[key] for key in NEW_METHODS}}
# The epoch the port's step is compiled at: past DKD's and ReviewKD's warm-up, as
# the PyTorch steps (the term at its full weight).
EPOCH = {"DKD": 30, "ReviewKD": 30}


def port_step(workload, batch_norm, tf_batch):
    method = PORT[workload]
    if workload == "CRD":     # the training split's labels; the batch: its first images
        labels = tf_batch[1].numpy()
        method = functools.partial(method, train_labels=crd_labels(labels))
        indices = tf.range(len(labels), dtype=tf.int32)
        tf_batch = ((tf_batch[0], indices), tf_batch[1])
    distiller = build(method, batch_norm, teacher=workload != "student step")
    step = compiled(distiller, epoch=EPOCH.get(workload))
    return lambda: step(tf_batch)


# `--variants`: PyTorch eager (channels_last, the ratios' reference; NCHW),
# torch.compile, and the port with each batch norm.
VARIANTS = {"eager": "PyTorch eager, channels_last", "nchw": "PyTorch eager, NCHW",
            "compile": "torch.compile, channels_last", "keras": "port, Keras 3 batch norm",
            "fused": "port, fused batch norm"}


def timed(steps_by_name, warmup, steps):
    """`{name: (wall, cpu)}`: the medians (s) of each step's wall-clock and
    process CPU time, each step warmed up, then one step of each per round
    for `steps` rounds."""
    for step in steps_by_name.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps_by_name}
    for _ in range(steps):
        for name, step in steps_by_name.items():
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: tuple(np.median(np.array(t), 0)) for name, t in times.items()}


def tensorflow_onednn():
    """Whether TensorFlow runs its oneDNN kernels (PyTorch always does): by
    default only on CPUs with AVX-512 VNNI and the like, or as the
    environment variable says."""
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset: TensorFlow's default for this CPU")
    try:
        from tensorflow.python.util import _pywrap_util_port
        state = "on" if _pywrap_util_port.IsMklEnabled() else "off"
    except (ImportError, AttributeError):
        state = "unknown"
    return f"{state} ({setting})"


def load_average():
    """The machine's load (other jobs share the cores), for the report."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def torch_compile_works():
    try:
        f = torch.compile(lambda x: torch.relu(x) * 2)
        f(torch.ones(4))
        return True
    except Exception as error:   # no compiler, unsupported platform, ...
        print(f"torch.compile unavailable: {type(error).__name__}: {error}", flush=True)
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(
        ["student step", "teacher forward", "Soft_logits", "AT", "RKD", *NEW_METHODS]))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--no_compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, of " + ", ".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=0,
                        help="threads of each framework (PyTorch intra-op, TensorFlow intra- "
                             "and inter-op); 0: their defaults")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown or "eager" not in variants:
        parser.error(f"--variants: unknown {sorted(unknown)}" if unknown else
                     "--variants: the ratios are to 'eager' (PyTorch eager, channels_last)")
    if args.threads:
        torch.set_num_threads(args.threads)
        with contextlib.suppress(RuntimeError):    # only before PyTorch's first parallel work
            torch.set_num_interop_threads(args.threads)
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    rng = np.random.RandomState(0)
    batch = (rng.randn(args.batch_size, 32, 32, 3).astype("float32"),
             rng.randint(0, 100, args.batch_size).astype("int32"))
    tf_batch = (tf.constant(batch[0]), tf.constant(batch[1]))
    use_compile = "compile" in variants and not args.no_compile and torch_compile_works()

    machine = describe()
    machine.update({"torch": torch.__version__,
                    "torch threads (intra-op / inter-op)":
                        f"{torch.get_num_threads()} / {torch.get_num_interop_threads()}",
                    "mkldnn": torch.backends.mkldnn.is_available(),
                    "TensorFlow oneDNN (TF_ENABLE_ONEDNN_OPTS)": tensorflow_onednn(),
                    "platform": platform.platform(),
                    "load average at the start (1 / 5 / 15 min)": load_average()})
    lines = ["# The port against PyTorch", "",
             f"Command: `python benchmarks/torch_compare.py {' '.join(argv or sys.argv[1:])}`",
             ""] + [f"- {k}: {v}" for k, v in machine.items()]
    lines += ["", f"Batch {args.batch_size}, 32x32x3, 100 classes, full-width ResNet8 student "
              "and ResNet32 teacher; median of "
              f"{args.steps} steps after {args.warmup} warm-up steps, the variants of a "
              f"workload timed in {args.steps} interleaved rounds; wall-clock and process CPU "
              "time. Ratios: to PyTorch eager channels_last (below 1: faster than it).", "",
              "| workload | variant | wall (ms) | CPU (ms) | wall ratio | CPU ratio |",
              "|---|---|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for workload in args.workloads.split(","):
        makers = {"eager": lambda: torch_step(workload, batch),
                  "nchw": lambda: torch_step(workload, batch, channels_last=False),
                  "compile": lambda: torch_step(workload, batch, compile_=True),
                  "keras": lambda: port_step(workload, "keras", tf_batch),
                  "fused": lambda: port_step(workload, "fused", tf_batch)}
        steps = {VARIANTS[key]: makers[key]() for key in VARIANTS
                 if key in variants and (key != "compile" or use_compile)}
        medians = timed(steps, args.warmup, args.steps)
        wall_0, cpu_0 = medians["PyTorch eager, channels_last"]
        for name, (wall, cpu) in medians.items():
            lines.append(f"| {workload} | {name} | {1e3 * wall:.1f} | {1e3 * cpu:.1f} | "
                         f"{wall / wall_0:.2f} | {cpu / cpu_0:.2f} |")
            print(lines[-1], flush=True)
        if args.out:
            files.write_text(args.out, "\n".join(
                lines + ["", f"Load average when written (1 / 5 / 15 min): {load_average()}"])
                + "\n")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
