"""Step time of every method's compiled `train_step`, as a ratio to its floor.

    python benchmarks/step_time.py --out=benchmarks/results/step_time.md

The TF1 setting by default: batch 128, 32x32x3 images, 100 classes, the
full-width ResNet32 teacher and ResNet8 student. The floor of a method is one
student training step (CE + weight decay) plus one teacher forward pass in
inference mode, with no distillation; DML's floor is a teacher training step
plus a student training step. Floor and method steps are timed in
alternating rounds, so that a change of machine load hits both alike; each
figure is the median over `--steps` steps after `--warmup` steps. Methods
with an initialisation phase are timed in both phases.

Also times each SVD path (`tf.linalg.svd` and the eigen route `svd_eid`,
forward alone and forward + backward) on the student's three stage
features, and breaks the step of the clipped methods (`--breakdown`) into
what the distillation loss's forward pass, its backward pass and the
separate clipped gradients add to the floor.
"""

import argparse
import os
import sys
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nets import ResNet  # noqa: E402
from tf_kd import files, optimizers, svd  # noqa: E402
from tf_kd.distillers import DISTILLERS, Distiller  # noqa: E402
from tf_kd.distillers.base import class_loss, unpack  # noqa: E402
from benchmarks.machine import describe  # noqa: E402


class Floor(Distiller):
    """A student training step plus a teacher forward pass (for DML: a
    teacher training step plus a student training step)."""

    def __init__(self, student, teacher, train_teacher=False, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.train_teacher = train_teacher
        teacher.trainable = train_teacher

    def train_step(self, data):
        images, labels = unpack(data)
        if self.train_teacher:
            with tf.GradientTape() as tape:
                logits = self.teacher(images, training=True)["logits"]
                loss = class_loss(labels, logits) + self.weight_decay(self.teacher)
            self.apply_gradients(loss, tape, self.teacher.trainable_variables)
        else:
            # returned, so that the forward pass is not pruned from the graph
            logits = self.teacher_outputs(images)["logits"]
        logs = self.class_step(data)
        logs["teacher"] = tf.reduce_mean(logits)
        return logs


def build(method, image_shape, num_classes, width, **kwargs):
    student = ResNet(image_shape, num_classes, "Student", width=width)
    teacher = ResNet(image_shape, num_classes, "Teacher", width=width)
    distiller = method(student, teacher=teacher, **kwargs)
    distiller.compile(optimizer=optimizers.Momentum(0.1))
    return distiller


# The methods whose distillation gradient is clipped per variable against the
# class-loss gradient (TF1 `Optimizer_w_Distillation` for KD-SVD, and MHGD's).
CLIPPED = ("KD-SVD", "KD-EID", "MHGD")


def one_gradient(method, with_distillation):
    """`method` with its clipped update replaced by one gradient of
    `CE + decay`, plus the distillation loss if `with_distillation` (else the
    loss is still computed, and reported, but not differentiated)."""

    class OneGradient(method):
        def apply_clipped_gradients(self, class_loss, decay, distillation_loss, tape,
                                    variables, clip_factor):
            with tape:      # persistent: the sum is recorded too
                loss = class_loss + decay
                if with_distillation:
                    loss += distillation_loss
            self.apply_gradients(loss, tape, variables)

    return OneGradient


def breakdown(key, floor_step, batch, image_shape, num_classes, width, warmup, steps):
    """`key`'s main-phase step as ratios to the floor in three stages: with
    its distillation loss computed but not differentiated, with one gradient
    of the summed loss, and as it is (three gradients, clipped); and the
    floor's median (seconds)."""
    method = DISTILLERS[key]
    epoch = method.default_init_epoch
    row = {}
    for name, variant in (("forward", one_gradient(method, False)),
                          ("one gradient", one_gradient(method, True)),
                          ("clipped", method)):
        distiller = build(variant, image_shape, num_classes, width)
        step, row["floor"] = compare(compiled_step(distiller, epoch), floor_step, batch,
                                     warmup, steps)
        row[name] = step / row["floor"]
    return row


def compiled_step(distiller, epoch):
    """The distiller's `train_step` as one graph, in the phase of `epoch`."""
    distiller.on_epoch_begin(epoch)
    step = tf.function(distiller.train_step)
    return lambda batch: [t.numpy() for t in step(batch).values()]


def time_steps(step, batch, count):
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - start)
    return times


def compare(method_step, floor_step, batch, warmup, steps, rounds=4):
    """Medians (seconds) of the method's and the floor's steps, timed in
    `rounds` alternating rounds after `warmup` steps of each."""
    time_steps(method_step, batch, warmup)
    time_steps(floor_step, batch, warmup)
    per_round = -(-steps // rounds)
    method_times, floor_times = [], []
    for _ in range(rounds):
        floor_times += time_steps(floor_step, batch, per_round)
        method_times += time_steps(method_step, batch, per_round)
    return float(np.median(method_times)), float(np.median(floor_times))


def phases(method):
    """`(name, epoch)` of the phases to time: the initialisation phase (if the
    method has one) and the main phase."""
    if method.default_init_epoch > 0:
        return [("init", 0), ("main", method.default_init_epoch)]
    return [("main", 0)]


def svd_paths(batch_size, width, image_size=32, steps=20, warmup=3):
    """Median forward and forward+backward times of each SVD path per
    student stage feature shape `[B, H, W, D]`, with the number of vectors
    KD-SVD takes from the student (4)."""
    student = ResNet((image_size, image_size, 3), 100, "Student", width=width)
    shapes = [tuple(student.output[f"feat{i}"].shape[1:]) for i in range(3)]
    rows = []
    for shape in shapes:
        x = tf.random.normal((batch_size, *shape))
        row = {"shape": "x".join(map(str, (batch_size, *shape)))}
        for name, decompose in (("svd", svd.svd), ("eid", svd.svd_eid)):
            @tf.function
            def forward(x, decompose=decompose):
                return decompose(x, 4)[2]

            @tf.function
            def forward_backward(x, decompose=decompose):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(decompose(x, 4)[2])
                return tape.gradient(loss, x)

            for suffix, function in (("", forward_backward), ("_forward", forward)):
                def run(batch, function=function):
                    function(batch).numpy()
                time_steps(run, x, warmup)
                row[name + suffix] = float(np.median(time_steps(run, x, steps)))
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(
        k for k, method in DISTILLERS.items() if k != "None" and not method.data_free),
                        help="comma-separated --Distillation keys")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--num_classes", type=int, default=100)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--target", type=float, default=1.10)
    parser.add_argument("--breakdown", default=",".join(CLIPPED),
                        help="clipped methods whose main-phase step is broken down "
                        "(empty: none)")
    parser.add_argument("--out", default="", help="also write the Markdown here")
    args = parser.parse_args(argv)

    tf.keras.utils.set_random_seed(0)
    image_shape = (args.image_size, args.image_size, 3)
    rng = np.random.RandomState(0)
    batch = (tf.constant(rng.randn(args.batch_size, *image_shape), tf.float32),
             tf.constant(rng.randint(0, args.num_classes, args.batch_size), tf.int32))

    lines = ["# Step time per method", "",
             f"Command: `python benchmarks/step_time.py {' '.join(argv or sys.argv[1:])}`",
             ""]
    lines += [f"- {k}: {v}" for k, v in describe().items()]
    lines += ["", f"Batch {args.batch_size}, {image_shape} images, {args.num_classes} classes, "
              f"width {args.width}; median of {args.steps} steps after {args.warmup} "
              "warm-up steps, method and floor timed in alternating rounds.", "",
              "| method | phase | step (ms) | floor (ms) | ratio | within target |",
              "|---|---|---:|---:|---:|---|"]
    svd_lines = ["", "## SVD paths (4 vectors, student stage features)", "",
                 "| feature | tf.linalg.svd forward (ms) | forward + backward (ms) "
                 "| eigen route forward (ms) | forward + backward (ms) |",
                 "|---|---:|---:|---:|---:|"]
    for row in svd_paths(args.batch_size, args.width, args.image_size, args.steps):
        svd_lines.append(f"| {row['shape']} | " + " | ".join(
            f"{1e3 * row[k]:.1f}" for k in ("svd_forward", "svd", "eid_forward", "eid")) + " |")
    print("\n".join(lines), flush=True)

    def save():
        if args.out:
            files.write_text(args.out, "\n".join(lines + svd_lines) + "\n")

    floors = {}
    for key in [key for key in args.methods.split(",") if key]:
        method = DISTILLERS[key]
        kind = "teacher training" if not method.pretrained_teacher else "teacher forward"
        if kind not in floors:
            floor = build(Floor, image_shape, args.num_classes, args.width,
                          train_teacher=not method.pretrained_teacher)
            floors[kind] = compiled_step(floor, 0)
        distiller = build(method, image_shape, args.num_classes, args.width)
        for phase, epoch in phases(method):
            step, floor_time = compare(compiled_step(distiller, epoch), floors[kind], batch,
                                       args.warmup, args.steps)
            ratio = step / floor_time
            line = (f"| {key} | {phase} | {1e3 * step:.1f} | {1e3 * floor_time:.1f} | "
                    f"{ratio:.2f} | {'yes' if ratio <= args.target else 'no'} |")
            lines.append(line)
            print(line, flush=True)
            save()      # a long run interrupted keeps the rows it has

    print("\n".join(svd_lines), flush=True)
    save()
    keys = [key for key in args.breakdown.split(",") if key]
    if keys:
        svd_lines += ["", "## Where the time of the clipped methods goes (main phase)", "",
                      "Step time as a ratio to the floor: with the distillation loss "
                      "computed but not differentiated, with one gradient of `CE + decay + "
                      "distillation`, and as the method is (three gradients, the "
                      "distillation one clipped per variable).", "",
                      "| method | floor (ms) | + loss forward | + loss backward "
                      "| clipped (as is) |", "|---|---:|---:|---:|---:|"]
        floor = floors.get("teacher forward") or compiled_step(
            build(Floor, image_shape, args.num_classes, args.width), 0)
        for key in keys:
            row = breakdown(key, floor, batch, image_shape, args.num_classes, args.width,
                            args.warmup, args.steps)
            svd_lines.append(f"| {key} | {1e3 * row['floor']:.1f} | " + " | ".join(
                f"{row[k]:.2f}" for k in ("forward", "one gradient", "clipped"))
                + " |")
            print(svd_lines[-1], flush=True)
            save()


if __name__ == "__main__":
    main()
