"""Compare trials with each other and with the TF1 results.

    python scripts/report.py --root=runs/cifar100 --out=runs/cifar100/report [--tf1] [--baseline=None]

Reads `root/<method>/trial*/log.mat` and writes `report.md` and `report.csv`
(per method: trials, mean and standard deviation of the last and the best
validation accuracy, and with `--tf1` — runs in the TF1 setting, CIFAR-100,
ResNet32 -> ResNet8, 100 + init epochs — the TF1 numbers and the
differences; with `--baseline=M`, each method's gain in mean last and best
accuracy over method `M`, e.g. the undistilled student), `curves.png` (the averaged validation curves of all methods)
and the averaged curves as TensorBoard scalars in `out/tensorboard/<method>`.
"""

import argparse
import csv
import glob
import os
import sys

import numpy as np
import scipy.io as sio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tf_kd.tf1_results import TF1_RESULTS  # noqa: E402


def read_curves(root):
    """`{method: [validation curve per finished trial]}`."""
    curves = {}
    for path in sorted(glob.glob(os.path.join(root, "*", "trial*", "log.mat"))):
        method = os.path.basename(os.path.dirname(os.path.dirname(path)))
        if not os.path.exists(os.path.join(os.path.dirname(path), "train_params.mat")):
            continue    # unfinished
        curves.setdefault(method, []).append(np.ravel(sio.loadmat(path)["validation_acc"]))
    return curves


def summarise(curves, with_tf1, baseline=None):
    rows = []
    for method, trials in curves.items():
        last = np.array([c[-1] for c in trials])
        best = np.array([c.max() for c in trials])
        row = {"method": method, "trials": len(trials),
               "last_mean": last.mean(), "last_std": last.std(),
               "best_mean": best.mean(), "best_std": best.std()}
        if with_tf1 and method in TF1_RESULTS:
            row["tf1_last"], row["tf1_best"] = TF1_RESULTS[method]
            row["last_diff"] = row["last_mean"] - row["tf1_last"]
            row["best_diff"] = row["best_mean"] - row["tf1_best"]
        rows.append(row)
    if baseline:
        if baseline not in curves:
            raise SystemExit(f"No finished trial of the baseline {baseline!r}.")
        base = next(r for r in rows if r["method"] == baseline)
        for row in rows:
            row["last_gain"] = row["last_mean"] - base["last_mean"]
            row["best_gain"] = row["best_mean"] - base["best_mean"]
    return rows


def write_tables(rows, out, with_tf1):
    columns = ["method", "trials", "last_mean", "last_std", "best_mean", "best_std"]
    if "last_gain" in rows[0]:
        columns += ["last_gain", "best_gain"]
    if with_tf1:
        columns += ["tf1_last", "tf1_best", "last_diff", "best_diff"]
    with open(os.path.join(out, "report.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    def cell(row, key):
        value = row.get(key, "")
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(r, c) for c in columns) + " |" for r in rows]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def average(trials):
    length = min(len(c) for c in trials)
    return np.mean([c[:length] for c in trials], axis=0)


def write_curves(curves, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    figure, axis = plt.subplots(figsize=(8, 5))
    for method, trials in curves.items():
        curve = average(trials)
        axis.plot(np.arange(1, len(curve) + 1), curve, label=method)
        with tf.summary.create_file_writer(os.path.join(out, "tensorboard", method)).as_default():
            for epoch, value in enumerate(curve):
                tf.summary.scalar("validation_accuracy", value, step=epoch)
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation accuracy (%)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.savefig(os.path.join(out, "curves.png"), dpi=120, bbox_inches="tight")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tf1", action="store_true",
                        help="the runs used the TF1 setting: show the TF1 numbers")
    parser.add_argument("--baseline", default="",
                        help="show each method's gain over this method (e.g. None)")
    args = parser.parse_args(argv)
    curves = read_curves(args.root)
    if not curves:
        raise SystemExit(f"No finished trial under {args.root}.")
    os.makedirs(args.out, exist_ok=True)
    rows = summarise(curves, args.tf1, args.baseline)
    write_tables(rows, args.out, args.tf1)
    write_curves(curves, args.out)
    print(open(os.path.join(args.out, "report.md")).read())


if __name__ == "__main__":
    main(sys.argv[1:])
