"""Compare trials with each other, with the TF1 results and with published ones.

    python scripts/report.py --root=runs/cifar100 --out=runs/cifar100/report \
        [--tf1] [--published] [--baseline=None]

Reads the finished trials `root/<method>/trial*` (their run records and
`log.mat`) and writes `report.md` and `report.csv` (per method: trials, mean
and standard deviation of the last and the best validation accuracy; with
`--tf1` — runs in the TF1 setting, CIFAR-100, ResNet32 -> ResNet8, 100 +
init epochs — the TF1 numbers and the differences; with `--published` — runs
of RepDistiller's CIFAR-100 pairs — each method's published top-1 on its
trials' pair (`tf_kd.published_results`, by the run records' `model_name`
and `teacher_model_name`), its source and the differences; each under a
warning where a trial was trained in another setting; with `--baseline=M`,
each method's gain in mean last and best accuracy over method `M`, e.g. the
undistilled student), `curves.png` (the averaged validation curves of all
methods) and the averaged curves as TensorBoard scalars in
`out/tensorboard/<method>`. Trials that failed, are unfinished or damaged are
listed under the table, never averaged.
"""

import argparse
import csv
import glob
import io
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tf_kd import files, published_results, run_record, training  # noqa: E402
from tf_kd.errors import UserError  # noqa: E402
from tf_kd.tf1_results import TF1_RESULTS  # noqa: E402


# The setting of the TF1 table (`train_w_distill.py`'s defaults, the whole
# CIFAR-100 training split): `--tf1` compares only trials trained in it.
TF1_SETTING = {"dataset": "cifar100", "model_name": "ResNet", "width": 1.0, "train_subset": 0,
               "train_epoch": 100, "batch_size": 128, "learning_rate": 0.1,
               "weight_decay": 5e-4, "labels_per_class": 0}


def finished_configs(root):
    """`[(trial, its recorded settings)]` of the finished trials under `root`
    (flags a record lacks at their defaults)."""
    finished = []
    for trial in sorted(glob.glob(os.path.join(glob.escape(root), "*", "trial*"))):
        try:
            record = run_record.read(trial)
        except UserError:
            continue        # listed as damaged by read_curves
        if record is not None and record["state"] == run_record.FINISHED:
            finished.append((trial, {**training.Config().settings(), **record["config"]}))
    return finished


def off_setting(config, setting):
    """`"--flag=value, ..."` of `config`'s flags that differ from `setting`."""
    return ", ".join(f"--{k}={config.get(k)}" for k, v in setting.items() if config.get(k) != v)


def off_tf1_setting(root):
    """`[(trial, "--flag=value, ...")]`: the finished trials under `root`
    trained in another setting than the TF1 table's."""
    return [(trial, off_setting(config, TF1_SETTING)) for trial, config in finished_configs(root)
            if off_setting(config, TF1_SETTING)]


def published(root):
    """`({method: (what, (top-1, source key) or None)}, [warning lines])`:
    each method directory's published number on its finished trials' pair
    (`what`: "teacher -> student", or the network trained alone),
    warned where a trial's setting (dataset, schedule, epochs, batch, learning
    rate, weight decay, data) is not the publishers' or the method here is
    TF1's procedure; trials of one method on two pairs are refused."""
    found, off, tf1_procedures = {}, [], set()
    for trial, config in finished_configs(root):
        method = os.path.basename(os.path.dirname(trial))
        key = published_results.method_key(config)
        alone = key in ("Teacher", "None")
        pair = (config["teacher_model_name"] or config["model_name"], config["model_name"])
        what = f"{config['model_name']} alone" if alone else f"{pair[0]} -> {pair[1]}"
        if method in found and found[method][0] != what:
            raise SystemExit(f"{method}: trials of {found[method][0]} and of {what}; one pair "
                             "per method directory.")
        found[method] = (what, published_results.lookup(config))
        differ = off_setting(config, published_results.setting(config["model_name"]))
        if not alone and pair not in published_results.PAIRS:
            differ = ", ".join(filter(None, [f"pair {what}", differ]))
        if differ:
            off.append((trial, differ))
        if not alone and key not in published_results.PORTED:
            tf1_procedures.add(key)
    warnings = []
    if off:
        warnings.append(
            f"Warning: {len(off)} trial(s) were not trained in the published setting (CIFAR-100, "
            "a pair of RepDistiller, --schedule=reference, 240 epochs, batch 64, lr 0.05 or 0.01, "
            f"weight decay 5e-4), e.g. {off[0][0]} with {off[0][1]}: the published column is "
            "not their reference.")
    if tf1_procedures:
        warnings.append(
            f"Warning: {', '.join(sorted(tf1_procedures))} here follow(s) TF1's procedure; the "
            "published numbers are RepDistiller's implementations (docs/reproducing.md).")
    return found, warnings


def read_curves(root):
    """`({method: [validation curve per finished trial]}, [(trial, state)
    of every other trial])`: a trial counts only if its run record says it
    finished and its `log.mat` holds its curve."""
    curves, left_out = {}, []
    for trial in sorted(glob.glob(os.path.join(glob.escape(root), "*", "trial*"))):
        method = os.path.basename(os.path.dirname(trial))
        try:
            record = run_record.read(trial)
            if record is None:
                left_out.append((trial, f"no {run_record.NAME}"))
            elif record["state"] != run_record.FINISHED:
                left_out.append((trial, run_record.describe(record)))
            else:
                curve = validation_curve(trial, record)
                curves.setdefault(method, []).append(curve)
        except UserError as error:
            left_out.append((trial, str(error)))
    return curves, left_out


def validation_curve(trial, record):
    """The finished trial's `validation_acc`, one value per epoch of its
    record; a `log.mat` without them is damaged (`UserError`)."""
    path = os.path.join(trial, "log.mat")
    curve = training.read_log(path).get("validation_acc", np.zeros(0))
    if len(curve) != record["epochs"]:
        raise UserError(f"{path} is damaged: it holds {len(curve)} validation accuracies "
                        f"for the run's {record['epochs']} epochs.")
    return curve


def summarise(curves, with_tf1, baseline=None, published_by_method=None):
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
        what, entry = (published_by_method or {}).get(method, ("", None))
        row["pair"] = what
        if entry:
            value, row["source"] = entry
            row.update(published=value, last_vs_published=row["last_mean"] - value,
                       best_vs_published=row["best_mean"] - value)
        rows.append(row)
    if baseline:
        if baseline not in curves:
            raise SystemExit(f"No finished trial of the baseline {baseline!r}.")
        base = next(r for r in rows if r["method"] == baseline)
        for row in rows:
            row["last_gain"] = row["last_mean"] - base["last_mean"]
            row["best_gain"] = row["best_mean"] - base["best_mean"]
    return rows


def write_tables(rows, out, with_tf1, left_out=(), warning=None, with_published=False):
    columns = ["method", "trials", "last_mean", "last_std", "best_mean", "best_std"]
    if "last_gain" in rows[0]:
        columns += ["last_gain", "best_gain"]
    if with_tf1:
        columns += ["tf1_last", "tf1_best", "last_diff", "best_diff"]
    if with_published:
        columns += ["pair", "published", "last_vs_published", "best_vs_published", "source"]
    table = io.StringIO()
    writer = csv.DictWriter(table, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(os.path.join(out, "report.csv"), table.getvalue())

    def cell(row, key):
        value = row.get(key, "")
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = [warning, ""] if warning else []
    lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(r, c) for c in columns) + " |" for r in rows]
    sources = sorted({r["source"] for r in rows if r.get("source")})
    if sources:
        lines += ["", "Published numbers:", ""]
        lines += [f"- {s}: {published_results.SOURCES[s]}" for s in sources]
    if left_out:
        lines += ["", "Not counted (failed or unfinished):", ""]
        lines += [f"- {trial}: {state}" for trial, state in left_out]
    files.write_text(os.path.join(out, "report.md"), "\n".join(lines) + "\n")


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
    with files.replacing(os.path.join(out, "curves.png")) as partial:
        figure.savefig(partial, dpi=120, bbox_inches="tight", format="png")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tf1", action="store_true",
                        help="the runs used the TF1 setting: show the TF1 numbers")
    parser.add_argument("--published", action="store_true",
                        help="the runs are of a CIFAR-100 pair of RepDistiller: show the "
                             "published numbers")
    parser.add_argument("--baseline", default="",
                        help="show each method's gain over this method (e.g. None)")
    args = parser.parse_args(argv)
    off = off_tf1_setting(args.root) if args.tf1 else []
    warning = off and (
        f"Warning: {len(off)} trial(s) were not trained in the TF1 table's setting (CIFAR-100, "
        f"full width, 100 epochs at 0.1, batch 128), e.g. {off[0][0]} with {off[0][1]}: the "
        "TF1 columns are not their reference.")
    published_by_method = None
    if args.published:
        published_by_method, lines = published(args.root)
        warning = "\n\n".join(filter(None, [warning, *lines]))
    if warning:
        print(warning, file=sys.stderr)
    curves, left_out = read_curves(args.root)
    for trial, state in left_out:
        print(f"not counted: {trial}: {state}", file=sys.stderr)
    if not curves:
        raise SystemExit(f"No finished trial under {args.root}.")
    os.makedirs(args.out, exist_ok=True)
    rows = summarise(curves, args.tf1, args.baseline, published_by_method)
    write_tables(rows, args.out, args.tf1, left_out, warning, args.published)
    write_curves(curves, args.out)
    print(open(os.path.join(args.out, "report.md")).read())


if __name__ == "__main__":
    main(sys.argv[1:])
