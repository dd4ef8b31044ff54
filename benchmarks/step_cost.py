"""Parameters and FLOPs of a training step on RepDistiller's CIFAR-100 pairs
(docs/reproducing.md), and optionally its time on this machine.

    python benchmarks/step_cost.py [--time=resnet56_resnet20,resnet32x4_resnet8x4] [--steps=5]

FLOPs are those of one forward pass at batch 64, 32x32x3, counted from the
Keras layers' shapes: the convolutions (grouped and depthwise included) and
dense layers, two operations a multiply-add; batch norm, activations and
the loss are left out. A training step is
taken as the teacher's forward pass plus three times the student's (its
forward pass, the input and the weight gradients of each layer), as
`benchmarks/default_job.py conv_flops` counts a backward pass. `--time`
times the compiled KD step (`--Distillation=KD`) of the pairs named.
"""

import argparse
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import nets  # noqa: E402
from benchmarks import machine  # noqa: E402
from tf_kd import optimizers, published_results  # noqa: E402
from tf_kd.distillers import DISTILLERS  # noqa: E402

BATCH = 64
SHAPE = (32, 32, 3)


def network(name, scope):
    return nets.get_network(name)(SHAPE, 100, scope)


def forward_flops(model):
    """FLOPs of `model`'s convolutions and dense layers on BATCH images, from
    the layers' shapes: `2 * outputs * kernel height * width * input
    channels / groups` (TensorFlow's profiler gives the same numbers, but
    cannot see into the grouped convolutions, which Keras runs as functions)."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            flops += 2 * np.prod(layer.output.shape[1:]) * np.prod(layer.kernel_size)
        elif isinstance(layer, keras.layers.Conv2D):
            fan_in = np.prod(layer.kernel_size) * layer.input.shape[-1] // layer.groups
            flops += 2 * np.prod(layer.output.shape[1:]) * fan_in
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return int(BATCH * flops)


def parameters(model):
    """Trainable parameters (PyTorch's `parameters()`: without batch-norm statistics)."""
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def step_seconds(teacher_name, student_name, steps):
    """Median seconds of the compiled KD training step at batch BATCH."""
    distiller = DISTILLERS["KD"](network(student_name, "Student"),
                                 teacher=network(teacher_name, "Teacher"))
    distiller.compile(optimizer=optimizers.Momentum(0.05, use_nesterov=False))
    step = tf.function(distiller.train_step)
    rng = np.random.RandomState(0)
    batch = (tf.constant(rng.randn(BATCH, *SHAPE), tf.float32),
             tf.constant(rng.randint(0, 100, BATCH), tf.int32))
    [t.numpy() for t in step(batch).values()]          # compile
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        [t.numpy() for t in step(batch).values()]
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", default="", help="pairs teacher_student to time, comma-separated")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    cost = {}
    print("| pair | student params | teacher params | student fwd GFLOP | teacher fwd GFLOP "
          "| step GFLOP |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for teacher_name, student_name in published_results.PAIRS:
        for name, scope in ((teacher_name, "Teacher"), (student_name, "Student")):
            if name not in cost:
                model = network(name, scope)
                cost[name] = (parameters(model), forward_flops(model) / 1e9)
        (s_params, s_flops), (t_params, t_flops) = cost[student_name], cost[teacher_name]
        print(f"| {teacher_name} -> {student_name} | {s_params:,} | {t_params:,} | "
              f"{s_flops:.3f} | {t_flops:.3f} | {t_flops + 3 * s_flops:.2f} |")
    if args.time:
        print("\n" + "\n".join(f"- {k}: {v}" for k, v in machine.describe().items()))
        for pair in args.time.split(","):
            teacher_name, student_name = next((t, s) for t, s in published_results.PAIRS
                                              if f"{t}_{s}" == pair)
            seconds = step_seconds(teacher_name, student_name, args.steps)
            print(f"- KD step, {teacher_name} -> {student_name}, batch {BATCH}: "
                  f"{1000 * seconds:.0f} ms (median of {args.steps})")


if __name__ == "__main__":
    main(sys.argv[1:])
