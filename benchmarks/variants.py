"""Variants of the same step timed side by side: the ratios behind issue 14.

    python benchmarks/variants.py --out=benchmarks/results/variants.md

Each comparison builds its variants (same seed, same networks, same batch),
warms each up, then times them in interleaved rounds (every round runs each
variant for a few steps, in turn), so that a change of load on the machine
hits all alike; a figure is the median over `--steps` steps, reported as a
ratio to the comparison's first variant. The TF1 setting by default (batch
128, 32x32x3, 100 classes, full-width ResNet8 student and ResNet32 teacher).

Comparisons (`--only` picks some):
- `batch_norm`: the networks with Keras 3's `BatchNormalization` against
  `tf_kd.layers.BatchNormalization` (fused kernel): a student training step,
  a teacher forward pass, a Soft_logits step;
- `teacher`: the teacher's inference forward pass as Keras runs it against
  `folded_inference` (batch norm folded into the convolutions), both with
  the fused and with Keras' batch norm;
- `clipped`: a clipped method's step (KD-SVD by default) with the class and
  distillation gradients from two backward passes (TF1) against one
  batched backward pass (`tape.jacobian` with pfor);
- `xla`: the student step compiled with and without XLA;
- `precision`: the student step and a Soft_logits step in float32, under
  the mixed_bfloat16 policy (`--precision`) and with XLA (`--jit_compile`),
  as `train.py` builds them.
"""

import argparse
import contextlib
import os
import sys
import time
import weakref

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
from keras.src.models import functional  # noqa: E402
import nets.resnet  # noqa: E402
from nets import ResNet  # noqa: E402
from tf_kd import files, layers, optimizers  # noqa: E402
from tf_kd.distillers import DISTILLERS  # noqa: E402
from tf_kd.distillers import base  # noqa: E402
from tf_kd.training import dtype_policy  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

_FOLDS = weakref.WeakKeyDictionary()


def batch_norm_folds(model):
    """`{id(conv): (conv, bn)}` for the batch norms of a functional `model`
    that read a 2-D convolution's output and nothing else, where that output
    goes nowhere else (channels last, no activation on the convolution)."""
    outputs = {id(t) for t in model.outputs}
    folds = {}
    for bn in model.layers:
        if (not isinstance(bn, keras.layers.BatchNormalization) or bn.renorm
                or len(bn._inbound_nodes) != 1):
            continue
        node = bn._inbound_nodes[0]
        if len(node.input_tensors) != 1:
            continue
        tensor = node.input_tensors[0]
        conv = tensor._keras_history.operation
        if (isinstance(conv, keras.layers.Conv2D)
                and conv.data_format == "channels_last"
                and conv.activation is keras.activations.linear
                and bn.axis in (-1, len(tensor.shape) - 1)
                and len(conv._inbound_nodes) == 1 and len(conv._outbound_nodes) == 1
                and id(tensor) not in outputs):
            folds[id(conv)] = (conv, bn)
    return folds


def folded_convolution(conv, bn):
    """`bn(conv(x), training=False)` as one convolution with a bias: kernel
    times `s = gamma / sqrt(moving_variance + epsilon)`, bias `beta +
    (conv_bias - moving_mean) * s`, from the variables' current values."""
    @tf.autograph.experimental.do_not_convert   # plain ops: nothing for autograph to do
    def call(x, **kwargs):
        scale = tf.math.rsqrt(tf.convert_to_tensor(bn.moving_variance) + bn.epsilon)
        if bn.scale:
            scale *= tf.convert_to_tensor(bn.gamma)
        bias = -tf.convert_to_tensor(bn.moving_mean)
        if conv.use_bias:
            bias += tf.convert_to_tensor(conv.bias)
        bias *= scale
        if bn.center:
            bias += tf.convert_to_tensor(bn.beta)
        dtype = conv.compute_dtype
        kernel = tf.cast(tf.convert_to_tensor(conv.kernel) * scale, dtype)
        outputs = conv.convolution_op(tf.cast(x, dtype), kernel)
        return tf.nn.bias_add(outputs, tf.cast(bias, dtype))
    return call


def folded_inference(model, images):
    """`model(images, training=False)` with the batch norms of
    `batch_norm_folds(model)` folded into their convolutions. Anything else
    (a model that is not functional, or has no such pair) runs as is."""
    if not isinstance(model, functional.Functional):
        return model(images, training=False)
    if model not in _FOLDS:
        _FOLDS[model] = batch_norm_folds(model)
    folds = _FOLDS[model]
    if not folds:
        return model(images, training=False)
    folded_bns = {id(bn) for _, bn in folds.values()}

    def operation_fn(operation):
        if id(operation) in folds:
            return folded_convolution(*folds[id(operation)])
        if id(operation) in folded_bns:
            return tf.autograph.experimental.do_not_convert(lambda x, **kwargs: x)
        return functional.operation_fn(operation, training=False)

    with tf.name_scope(model.name):
        return model._run_through_graph(model._standardize_inputs(images), operation_fn)


BATCH_NORMS = {"keras": keras.layers.BatchNormalization, "fused": layers.BatchNormalization}


@contextlib.contextmanager
def networks_with(batch_norm_class):
    """`nets.ResNet` built with `batch_norm_class` for its batch norms."""
    original = nets.resnet.batch_norm

    def batch_norm(x, name, weight_decay, relu=True):
        x = batch_norm_class(name=name, **layers.batch_norm_args(weight_decay))(x)
        return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x

    nets.resnet.batch_norm = batch_norm
    try:
        yield
    finally:
        nets.resnet.batch_norm = original


def plain_teacher(method):
    """`method` with the teacher run as Keras runs it (no folding)."""
    class Plain(method):
        def teacher_outputs(self, images):
            return self.teacher(images, training=False)
    return Plain


def folded_teacher(method):
    """`method` with the teacher's batch norms folded into its convolutions."""
    class Folded(method):
        def teacher_outputs(self, images):
            return folded_inference(self.teacher, images)
    return Folded


def xla_teacher(method):
    """`method` with the teacher's forward pass compiled by XLA."""
    class Xla(method):
        def teacher_outputs(self, images):
            if not hasattr(self, "_xla_teacher"):
                self._xla_teacher = tf.function(
                    lambda x: self.teacher(x, training=False), jit_compile=True)
            return self._xla_teacher(images)
    return Xla


def batched_backward_pass(method):
    """`method` with g_CE and g_dist from one batched backward pass: the
    Jacobian of `[CE, distillation]` (pfor over the two cotangents), then
    the same clipped sum as `Distiller.apply_clipped_gradients`."""
    class Batched(method):
        def apply_clipped_gradients(self, class_loss, decay, distillation_loss, tape,
                                    variables, clip_factor):
            replicas = base.num_replicas()
            with tape:      # persistent: the stacking is recorded too
                losses = tf.stack([class_loss, distillation_loss])
            stacked = tape.jacobian(losses, variables, experimental_use_pfor=True)
            class_grads = base.cross_replica_sum(
                [None if g is None else g[0] / replicas for g in stacked])
            distillation_grads = base.cross_replica_sum(
                [None if g is None else g[1] / replicas for g in stacked])
            decays = base.cross_replica_sum(base.replica_gradients(tape, decay, variables))
            pairs = [(base.clipped_sum(c, w, d, clip_factor) / replicas, v)
                     for c, w, d, v in zip(class_grads, decays, distillation_grads, variables)
                     if c is not None]
            self.optimizer.apply(*zip(*pairs))
    return Batched


class StudentStep(base.Distiller):
    """A student training step (CE + decay): TF1's `Distillation=None`."""
    needs_teacher = False

    def train_step(self, data):
        return self.class_step(data)


class TeacherForward(base.Distiller):
    """The teacher's forward pass in inference mode, nothing else."""

    def train_step(self, data):
        images, _ = base.unpack(data)
        outputs = self.teacher_outputs(images)
        return {k: tf.reduce_mean(v) for k, v in outputs.items()}


def build(method, batch_norm="fused", width=1.0, num_classes=100, image_size=32,
          teacher=True, seed=0, image_channels=3, scope="Student", teacher_policy=None):
    """`method` on a student (of `scope`'s shape) and, if `teacher`, a
    teacher, their batch norms of kind `batch_norm` (`BATCH_NORMS`)."""
    keras.utils.set_random_seed(seed)
    shape = (image_size, image_size, image_channels)
    with networks_with(BATCH_NORMS[batch_norm]):
        student = ResNet(shape, num_classes, scope, width=width)
        with dtype_policy(teacher_policy or keras.config.dtype_policy()):
            teacher_net = ResNet(shape, num_classes, "Teacher", width=width) if teacher else None
    distiller = method(student, teacher=teacher_net)
    distiller.compile(optimizer=optimizers.Momentum(0.1))
    return distiller


def compiled(distiller, epoch=None, jit_compile=False):
    """The distiller's `train_step` as one graph (main phase by default)."""
    distiller.on_epoch_begin(distiller.init_epoch if epoch is None else epoch)
    step = tf.function(distiller.train_step, jit_compile=jit_compile)
    return lambda batch: [t.numpy() for t in step(batch).values()]


def interleaved(steps_by_name, batch, warmup, steps, rounds=4):
    """Medians (s) of each step, timed in `rounds` rounds in turn."""
    for step in steps_by_name.values():
        for _ in range(warmup):
            step(batch)
    times = {name: [] for name in steps_by_name}
    per_round = -(-steps // rounds)
    for _ in range(rounds):
        for name, step in steps_by_name.items():
            for _ in range(per_round):
                start = time.perf_counter()
                step(batch)
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def table(title, medians, note=""):
    first = next(iter(medians.values()))
    lines = ["", f"## {title}", ""] + ([note, ""] if note else [])
    lines += ["| variant | median (ms) | ratio |", "|---|---:|---:|"]
    lines += [f"| {name} | {1e3 * t:.1f} | {t / first:.2f} |" for name, t in medians.items()]
    return lines


def compare_batch_norm(args, batch):
    lines = []
    for title, method, teacher in (("Student step (CE + decay)", StudentStep, False),
                                   ("Teacher forward pass (inference)",
                                    plain_teacher(TeacherForward), True),
                                   ("Soft_logits step (teacher as Keras runs it)",
                                    plain_teacher(DISTILLERS["Soft_logits"]), True)):
        steps = {f"{bn} batch norm": compiled(build(method, bn, args.width, teacher=teacher))
                 for bn in ("keras", "fused")}
        lines += table(f"Batch norm: {title}", interleaved(steps, batch, args.warmup,
                                                            args.steps))
        print("\n".join(lines[-len(steps) - 4:]), flush=True)
    return lines


def compare_teacher(args, batch):
    lines = []
    for bn in ("fused", "keras"):
        steps = {}
        for name, method in (("as Keras runs it", plain_teacher(TeacherForward)),
                             ("batch norm folded", folded_teacher(TeacherForward)),
                             ("XLA", xla_teacher(TeacherForward))):
            steps[name] = compiled(build(method, bn, args.width))
        steps["bfloat16 (mixed precision)"] = compiled(build(
            plain_teacher(TeacherForward), bn, args.width, teacher_policy="mixed_bfloat16"))
        lines += table(f"Teacher forward pass, {bn} batch norm",
                       interleaved(steps, batch, args.warmup, args.steps))
        print("\n".join(lines[-8:]), flush=True)
    steps = {name: compiled(build(variant(DISTILLERS["Soft_logits"]), "fused", args.width))
             for name, variant in (("teacher as Keras runs it", plain_teacher),
                                   ("teacher folded", folded_teacher))}
    steps["teacher in bfloat16 (--teacher_precision=mixed_bfloat16)"] = compiled(build(
        plain_teacher(DISTILLERS["Soft_logits"]), "fused", args.width,
        teacher_policy="mixed_bfloat16"))
    lines += table("Soft_logits step, fused batch norm",
                   interleaved(steps, batch, args.warmup, args.steps))
    print("\n".join(lines[-7:]), flush=True)
    return lines


def compare_clipped(args, batch):
    lines = []
    for key in args.clipped.split(","):
        method = DISTILLERS[key]
        steps = {name: compiled(build(variant(method), "fused", args.width))
                 for name, variant in (("two backward passes (as today)", lambda m: m),
                                       ("one batched backward pass (jacobian, pfor)",
                                        batched_backward_pass))}
        lines += table(f"{key} main-phase step, clipped update",
                       interleaved(steps, batch, args.warmup, args.steps))
        print("\n".join(lines[-6:]), flush=True)
    return lines


def compare_xla(args, batch):
    steps = {"compiled": compiled(build(StudentStep, "fused", args.width, teacher=False)),
             "compiled with XLA": compiled(build(StudentStep, "fused", args.width,
                                                 teacher=False), jit_compile=True)}
    lines = table("Student step, XLA", interleaved(steps, batch, args.warmup, args.steps))
    print("\n".join(lines), flush=True)
    return lines


def compare_precision(args, batch):
    lines = []
    for title, method, teacher in (("Student step", StudentStep, False),
                                   ("Soft_logits step", DISTILLERS["Soft_logits"], True)):
        steps = {}
        for name, policy, jit in (("float32", "float32", False),
                                  ("mixed_bfloat16", "mixed_bfloat16", False),
                                  ("float32, XLA", "float32", True)):
            with dtype_policy(policy):
                distiller = build(method, "fused", args.width, teacher=teacher)
            steps[name] = compiled(distiller, jit_compile=jit)
        lines += table(f"{title}: --precision and --jit_compile",
                       interleaved(steps, batch, args.warmup, args.steps))
        print("\n".join(lines[-7:]), flush=True)
    return lines


COMPARISONS = {"batch_norm": compare_batch_norm, "teacher": compare_teacher,
               "clipped": compare_clipped, "xla": compare_xla, "precision": compare_precision}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(COMPARISONS),
                        help="comma-separated comparisons: " + ", ".join(COMPARISONS))
    parser.add_argument("--clipped", default="KD-SVD", help="clipped methods to compare")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--num_classes", type=int, default=100)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default="", help="also write the Markdown here")
    args = parser.parse_args(argv)

    rng = np.random.RandomState(0)
    batch = (tf.constant(rng.randn(args.batch_size, 32, 32, 3), tf.float32),
             tf.constant(rng.randint(0, args.num_classes, args.batch_size), tf.int32))
    lines = ["# Variants of the same step, side by side", "",
             f"Command: `python benchmarks/variants.py {' '.join(argv or sys.argv[1:])}`", ""]
    lines += [f"- {k}: {v}" for k, v in describe().items()]
    lines += ["", f"Batch {args.batch_size}, 32x32x3 images, {args.num_classes} classes, "
              f"width {args.width}; median of {args.steps} steps after {args.warmup} "
              "warm-up steps, variants timed in four interleaved rounds; ratios to "
              "each table's first row."]
    print("\n".join(lines), flush=True)
    for name in [n for n in args.only.split(",") if n]:
        lines += COMPARISONS[name](args, batch)
        if args.out:
            files.write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
