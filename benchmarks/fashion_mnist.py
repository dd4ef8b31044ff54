"""The real-data CPU benchmark: every method on Fashion-MNIST, 2 seeds each.

    python benchmarks/fashion_mnist.py

Trains the teacher (ResNet32 shape) once, then the undistilled student and
every method but the data-free DFKD (ResNet8 shape) with the same schedule, `--trials` seeds each,
and writes the comparison report (table, curves, command, date, TensorFlow
version, CPU, wall times) to `--out`. The runs go to `--root`; running the
command again skips finished trials and resumes an interrupted one.

The fixed configuration is the default job's: 10 000 training images (the
full test set for validation), width 0.25, batch 128, the teacher 8 epochs
at learning rate 0.02 (it ends 4 points higher than at 0.1; docs/differences.md), the
students 5 epochs at 0.1 with the TF1 step schedule; a method's
initialisation phase is scaled like the training phase (TF1: 40 init epochs
for 100, here 2 for 5).
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine import describe  # noqa: E402
from tf_kd import files  # noqa: E402
from tf_kd.distillers import DISTILLERS  # noqa: E402

TF1_EPOCHS = 100


def init_epochs(method, train_epoch):
    """The method's TF1 initialisation phase scaled to `train_epoch`."""
    default = DISTILLERS[method].default_init_epoch
    return max(1, round(default * train_epoch / TF1_EPOCHS)) if default else 0


def autotrain(root, method, trials, flags):
    """Run (or finish) the trials of `method`; returns the seconds taken."""
    start = time.time()
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "autotrain.py"),
                    f"--methods={method}", f"--trials={trials}", f"--root={root}",
                    "--", *flags], check=True, cwd=ROOT)
    return time.time() - start


def gains(report_csv, baseline):
    """Markdown sentences: which methods beat `baseline` and by how much."""
    import csv
    with open(report_csv) as f:
        rows = [r for r in csv.DictReader(f) if r["method"] not in (baseline, "Teacher")]
    rows.sort(key=lambda r: -float(r["last_gain"]))
    better = [f"{r['method']} ({float(r['last_gain']):+.2f})" for r in rows
              if float(r["last_gain"]) > 0]
    worse = [f"{r['method']} ({float(r['last_gain']):+.2f})" for r in rows
             if float(r["last_gain"]) <= 0]
    return [f"Beat the undistilled student (`{baseline}`) in mean last-epoch accuracy: "
            + (", ".join(better) or "none") + ".",
            "Did not: " + (", ".join(worse) or "none") + "."]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(
        key for key, method in DISTILLERS.items() if not method.data_free),
                        help="comma-separated --Distillation keys (None: the undistilled "
                        "student); by default all but the data-free DFKD")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--root", default="runs/benchmark_fashion_mnist")
    parser.add_argument("--out", default="benchmarks/results/fashion_mnist")
    parser.add_argument("--train_epoch", type=int, default=5)
    parser.add_argument("--teacher_epoch", type=int, default=8)
    parser.add_argument("--teacher_learning_rate", type=float, default=0.02)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--train_subset", type=int, default=10000)
    parser.add_argument("--test_subset", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=128)
    args = parser.parse_args(argv)

    root, out = os.path.abspath(args.root), os.path.abspath(args.out)
    common = ["--dataset=fashion_mnist", f"--width={args.width}",
              f"--train_subset={args.train_subset}", f"--test_subset={args.test_subset}",
              f"--batch_size={args.batch_size}", "--verbose=2", "--exports="]   # scored only
    timing_path = os.path.join(root, "timing.json")
    os.makedirs(root, exist_ok=True)
    timing = json.load(open(timing_path)) if os.path.exists(timing_path) else {}

    def run(method, trials, flags):
        # summed over reruns, so that a resumed method counts all its time
        timing[method] = timing.get(method, 0.0) + autotrain(root, method, trials, flags)
        files.write_text(timing_path, json.dumps(timing, indent=1))

    run("Teacher", 1, [*common, f"--train_epoch={args.teacher_epoch}",
                       f"--learning_rate={args.teacher_learning_rate}"])
    teacher = os.path.join(root, "Teacher", "trial0", "model.keras")
    for method in args.methods.split(","):
        run(method, args.trials, [*common, f"--train_epoch={args.train_epoch}",
                                  f"--init_epoch={init_epochs(method, args.train_epoch)}",
                                  f"--teacher={teacher}"])

    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "report.py"),
                    f"--root={root}", f"--out={out}", "--baseline=None"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    table = open(os.path.join(out, "report.md")).read()
    info = describe()
    lines = ["# Fashion-MNIST benchmark", "",
             "Command: `python benchmarks/fashion_mnist.py " + " ".join(argv) + "`", "",
             *[f"- {k}: {v}" for k, v in info.items()],
             f"- wall time: {sum(timing.values()) / 60:.1f} min "
             "(per method, all its trials: "
             + ", ".join(f"{m} {s / 60:.1f}" for m, s in timing.items()) + ")", "",
             "Validation accuracy (%) on the test split; `last`: last epoch, `best`: best epoch, "
             "mean and standard deviation over trials; `gain`: difference to `None`, "
             "the undistilled student.", "", table,
             *gains(os.path.join(out, "report.csv"), "None"), "",
             "![validation curves](curves.png)"]
    files.write_text(os.path.join(out, "README.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
