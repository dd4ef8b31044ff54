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

For each workload every variant is warmed up, then all are timed in
interleaved rounds on one fixed batch (TF1 shapes: 128 x 32x32x3, 100
classes); a figure is the median over `--steps` steps, and the table gives
each as a ratio to PyTorch eager channels_last.
"""

import argparse
import contextlib
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.machine import describe  # noqa: E402
from benchmarks.variants import StudentStep, build, compiled, interleaved  # noqa: E402
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
        feats = []
        for i, block in enumerate(self.blocks):
            x, _ = block(x)
            if (i + 1) % self.num_blocks == 0:
                feats.append(x)
        pool = x.mean((2, 3))
        return {"feats": feats, "pool": pool, "logits": self.full(pool)}


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
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                weight_decay=WEIGHT_DECAY)
    loss_fn = LOSSES[workload]
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


PORT = {"student step": StudentStep, "teacher forward": TeacherCall,
        "Soft_logits": DISTILLERS["Soft_logits"], "AT": DISTILLERS["AT"],
        "RKD": DISTILLERS["RKD"]}


def port_step(workload, batch_norm, tf_batch):
    distiller = build(PORT[workload], batch_norm, teacher=workload != "student step")
    step = compiled(distiller)
    return lambda: step(tf_batch)


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
        ["student step", "teacher forward", "Soft_logits", "AT", "RKD"]))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--no_compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)

    rng = np.random.RandomState(0)
    batch = (rng.randn(args.batch_size, 32, 32, 3).astype("float32"),
             rng.randint(0, 100, args.batch_size).astype("int32"))
    tf_batch = (tf.constant(batch[0]), tf.constant(batch[1]))
    use_compile = not args.no_compile and torch_compile_works()

    machine = describe()
    machine.update({"torch": torch.__version__,
                    "torch threads (intra-op / inter-op)":
                        f"{torch.get_num_threads()} / {torch.get_num_interop_threads()}",
                    "mkldnn": torch.backends.mkldnn.is_available(),
                    "platform": platform.platform()})
    lines = ["# The port against PyTorch", "",
             f"Command: `python benchmarks/torch_compare.py {' '.join(argv or sys.argv[1:])}`",
             ""] + [f"- {k}: {v}" for k, v in machine.items()]
    lines += ["", f"Batch {args.batch_size}, 32x32x3, 100 classes, full-width ResNet8 student "
              "and ResNet32 teacher; median of "
              f"{args.steps} steps after {args.warmup} warm-up steps, all variants of a "
              "workload timed in four interleaved rounds. Ratio: to PyTorch eager "
              "channels_last (below 1: faster than it).", "",
              "| workload | variant | median (ms) | ratio |", "|---|---|---:|---:|"]
    print("\n".join(lines), flush=True)
    for workload in args.workloads.split(","):
        steps = {"PyTorch eager, channels_last": torch_step(workload, batch),
                 "PyTorch eager, NCHW": torch_step(workload, batch, channels_last=False)}
        if use_compile:
            steps["torch.compile, channels_last"] = torch_step(workload, batch, compile_=True)
        steps["port, Keras 3 batch norm"] = port_step(workload, "keras", tf_batch)
        steps["port, fused batch norm"] = port_step(workload, "fused", tf_batch)
        medians = interleaved({k: (lambda _, f=f: f()) for k, f in steps.items()}, None,
                              args.warmup, args.steps)
        reference = medians["PyTorch eager, channels_last"]
        for name, t in medians.items():
            lines.append(f"| {workload} | {name} | {1e3 * t:.1f} | {t / reference:.2f} |")
            print(lines[-1], flush=True)
        if args.out:
            files.write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
