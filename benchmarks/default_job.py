"""Where the former default job's time goes (its teacher; the quickstart until 2026-12-03).

    python benchmarks/default_job.py --out=benchmarks/results/default_job.md

The quickstart teacher: ResNet32 shape at width 0.25 on Fashion-MNIST
(32x32x1 after padding, 10 classes), 10,000 training images in batches of
128 (78 steps an epoch), the 10,000 test images validated in batches of 200
after every epoch. Each setting (thread counts, oneDNN on or off) runs in
its own process, the settings in turn, `--rounds` times, so that a change of
load on the machine hits all alike; every process measures, in seconds:

- `pipeline`: pulling one training batch from `dataloader.train_pipeline`;
- `step (keras bn)` / `step (fused bn)`: one compiled training step on a
  fixed batch, with the networks' batch norm as Keras 3 runs it and fused
  (`tf_kd.layers.BatchNormalization`), interleaved;
- `epoch`: `fit` for one epoch of 78 steps on the pipeline (the second
  epoch: the first traces), without validation;
- `validation`: `evaluate` on the 10,000 test images;

and the table gives the medians over the rounds, with the epoch's total
(fit + validation) as a ratio to the first setting's.

    python benchmarks/default_job.py --rate --out=...

instead measures how close the step comes to the CPU's arithmetic rate: the
floating-point operations of its convolutions and matrix products (forward
and both backward kernels, from TensorFlow's op statistics) over its time,
for the quickstart teacher and the same network at full width, against a
large float32 matrix product, all timed in alternating rounds in one
process.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {
    "default threads": {},
    "intra 2, inter 1": {"intra": 2, "inter": 1},
    "intra 1, inter 1": {"intra": 1, "inter": 1},
    "oneDNN off": {"env": {"TF_ENABLE_ONEDNN_OPTS": "0"}},
    "oneDNN off, intra 2, inter 1": {"intra": 2, "inter": 1,
                                     "env": {"TF_ENABLE_ONEDNN_OPTS": "0"}},
}


def worker(intra, inter, steps, batch_norms):
    import tensorflow as tf
    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    import dataloader
    from benchmarks.variants import build, compiled, interleaved
    from tf_kd.distillers import DISTILLERS
    from tf_kd import optimizers

    data = dataloader.load("fashion_mnist", train_subset=10000)
    per_epoch = dataloader.steps_per_epoch(data, 128)
    result = {}

    iterator = iter(dataloader.train_pipeline(data, 128, seed=0))
    batch = next(iterator)
    for _ in range(5):
        next(iterator)
    start = time.perf_counter()
    for _ in range(per_epoch):
        next(iterator)
    result["pipeline"] = (time.perf_counter() - start) / per_epoch

    def make(batch_norm):
        distiller = build(DISTILLERS["None"], batch_norm, width=0.25, num_classes=10,
                          teacher=False, image_channels=1, scope="Teacher")
        distiller.compile(optimizer=optimizers.Momentum(0.02))
        return distiller

    steps_by_name = {f"step ({bn} bn)": compiled(make(bn)) for bn in batch_norms}
    result.update(interleaved(steps_by_name, batch, 3, steps, rounds=2))

    distiller = make(batch_norms[-1])
    train_set = dataloader.train_pipeline(data, 128, seed=0)
    test_set = dataloader.test_pipeline(data, 200)
    distiller.fit(train_set, epochs=1, steps_per_epoch=per_epoch, verbose=0)
    distiller.evaluate(test_set, verbose=0)
    start = time.perf_counter()
    distiller.fit(train_set, epochs=2, initial_epoch=1, steps_per_epoch=per_epoch, verbose=0)
    result["epoch"] = time.perf_counter() - start
    start = time.perf_counter()
    distiller.evaluate(test_set, verbose=0)
    result["validation"] = time.perf_counter() - start
    result["steps per epoch"] = per_epoch
    print("RESULT " + json.dumps(result), flush=True)


def conv_flops(step, batch):
    """Floating-point operations of the convolutions and matrix products in
    one run of the `tf.function` `step` on `batch`, by TensorFlow's op
    statistics (`Conv2D`, its two backward kernels, `MatMul`)."""
    import tensorflow as tf
    graph = step.get_concrete_function(batch).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["account_type_regexes"] = ["Conv2D.*", "MatMul"]
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops


def rates(widths, steps, size=2048):
    """Rows of (name, GFLOP a run, median seconds) for the quickstart
    teacher's training step at each width and a `size`-square float32
    matrix product, timed in alternating rounds."""
    import tensorflow as tf
    from benchmarks.variants import build, interleaved
    from tf_kd.distillers import DISTILLERS
    from tf_kd import optimizers

    rng = np.random.RandomState(0)
    batch = (tf.constant(rng.randn(128, 32, 32, 1), tf.float32),
             tf.constant(rng.randint(0, 10, 128), tf.int32))
    a = tf.constant(rng.randn(size, size), tf.float32)
    matmul = tf.function(lambda x: tf.linalg.matmul(x, x))
    runs = {f"{size}x{size} float32 matrix product": (
        2 * size ** 3, lambda _: matmul(a).numpy())}
    for width in widths:
        distiller = build(DISTILLERS["None"], width=width, num_classes=10, teacher=False,
                          image_channels=1, scope="Teacher")
        distiller.compile(optimizer=optimizers.Momentum(0.02))
        step = tf.function(distiller.train_step)
        runs[f"teacher step, width {width:g}"] = (
            conv_flops(step, batch),
            lambda b, step=step: [t.numpy() for t in step(b).values()])
    medians = interleaved({name: run for name, (_, run) in runs.items()}, batch, 2, steps)
    return [(name, flops / 1e9, medians[name]) for name, (flops, _) in runs.items()]


def rate_table(widths, steps, size):
    rows = rates(widths, steps, size)
    peak = rows[0][1] / rows[0][2]
    lines = ["| run | GFLOP | median (ms) | GFLOP/s | of the matrix product's rate |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {gflop:.3g} | {1e3 * t:.1f} | {gflop / t:.0f} | "
              f"{gflop / t / peak:.0%} |" for name, gflop, t in rows]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="comma-separated names of SETTINGS")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch_norms", default="keras,fused")
    parser.add_argument("--out", default="")
    parser.add_argument("--rate", action="store_true",
                        help="measure the step's arithmetic rate instead (see above)")
    parser.add_argument("--widths", default="0.25,1.0", help="with --rate")
    parser.add_argument("--matrix_size", type=int, default=2048, help="with --rate")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from tf_kd import files
    if args.rate:
        from benchmarks.machine import describe
        lines = ["# The default job's teacher step against the CPU's arithmetic rate", "",
                 f"Command: `python benchmarks/default_job.py {' '.join(argv or sys.argv[1:])}`",
                 ""] + [f"- {k}: {v}" for k, v in describe().items()] + [""]
        lines += rate_table([float(w) for w in args.widths.split(",")], args.steps,
                            args.matrix_size)
        print("\n".join(lines))
        if args.out:
            files.write_text(args.out, "\n".join(lines) + "\n")
        return None
    if args.worker:
        setting = SETTINGS[args.worker]
        return worker(setting.get("intra"), setting.get("inter"), args.steps,
                      args.batch_norms.split(","))

    names = re.split(r",(?! )", args.settings)   # a name may hold ", "
    runs = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **SETTINGS[name].get("env", {})}
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", name,
                                  "--steps", str(args.steps), "--batch_norms", args.batch_norms],
                                 env=env, capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(out.split("RESULT ", 1)[1]))
            print(name, runs[name][-1], flush=True)

    from benchmarks.machine import describe
    keys = ["pipeline"] + [f"step ({bn} bn)" for bn in args.batch_norms.split(",")] + [
        "epoch", "validation"]
    lines = ["# The default job's teacher: where an epoch goes", "",
             f"Command: `python benchmarks/default_job.py {' '.join(argv or sys.argv[1:])}`", ""]
    lines += [f"- {k}: {v}" for k, v in describe().items()]
    lines += ["", f"Medians over {args.rounds} rounds, each setting in its own process, "
              "settings in turn; seconds (pipeline and steps: per batch of 128; epoch: "
              "`fit` over 78 steps; validation: 10,000 test images).", "",
              "| setting | " + " | ".join(keys) + " | epoch + validation | ratio |",
              "|---|" + "---:|" * (len(keys) + 2)]
    first = None
    for name in names:
        medians = {k: float(np.median([r[k] for r in runs[name]])) for k in keys}
        total = medians["epoch"] + medians["validation"]
        first = first or total
        lines.append(f"| {name} | " + " | ".join(f"{medians[k]:.3f}" for k in keys)
                     + f" | {total:.1f} | {total / first:.2f} |")
    print("\n".join(lines))
    if args.out:
        files.write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
