"""The low-data protocol: distillation where it pays, on Fashion-MNIST.

    python benchmarks/low_data.py                       # every method, 5 seeds, 3 budgets
    python benchmarks/low_data.py --methods=None,Soft_logits --budgets=10 --seeds=2
    python benchmarks/low_data.py ... -- --train_epoch=20      # train.py flags after --

A teacher that has seen all 60,000 training images (by default the shipped
`teachers/fashion_mnist`, see `teachers/README.md`) and students that keep
the labels of only N images per class (`--labels_per_class=N`), for each
budget N: the student alone (`None`) on its labelled images, and each method
on them plus the rest of the training images without their labels
(`--unlabeled=rest`: the teacher's knowledge on unlabelled data is the usual
reason to distil; Hinton et al. 2015, section 5). Seed `i` draws the same
labelled images and initialises the same way for every method, so each
method is compared with the student of its own seed (the paired gain).

Runs go to `--root/labels{N}/<method>/trial{i}` through `scripts/autotrain.py`
(running the command again skips finished runs and resumes interrupted
ones); the report covers every budget and method trained under `--root`,
also by earlier commands. `--out` gets `results.json` (every run's accuracy and the summary),
`report.md` (the table) and `low_data.png` (test accuracy against labels per
class, one line per method, error bars one standard deviation).
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tf_kd.cli import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()    # without TensorFlow's start-up banners, as train.py
from benchmarks.fashion_mnist import init_epochs  # noqa: E402
from tf_kd import files, run_record  # noqa: E402
from tf_kd.distillers import DISTILLERS  # noqa: E402
from tf_kd.errors import UserError  # noqa: E402

TEACHER = os.path.join(ROOT, "teachers", "fashion_mnist")
BASELINE = "None"
# The students' fixed setting: the default job's network at width 0.25, the
# first 5,000 training images (labelled or not) and all 10,000 test images,
# batches of 32 labelled (and 32 unlabelled) images, 4 epochs of 156 steps
# with TF1's schedule (0.1, then x0.1 each epoch); initialisation phases
# scaled like the training (TF1: 40 of 100 epochs, here 2). The students are
# scored, not deployed: no SavedModel or TFLite export (--exports=).
TRAIN_EPOCH = 4
PROTOCOL = ["--dataset=fashion_mnist", "--width=0.25", "--train_subset=5000",
            "--batch_size=32", f"--train_epoch={TRAIN_EPOCH}", "--verbose=2", "--exports="]
# Soft_logits as Hinton et al. weigh it (the KL times T^2, equal weights);
# TF1's 0.3 without T^2 weighs the soft term 27 times less (0.3 against 0.5 x 16).
# DKD's and ReviewKD's warm-ups (20 of 240 epochs in their references) scaled
# like the initialisation phases: 1 epoch. autotrain gives each flag only to
# the method that takes it.
METHOD_FLAGS = ["--kd_alpha=0.5", "--kd_t_squared", "--dkd_warmup=1", "--reviewkd_warmup=1"]


def command(argv):
    return "python benchmarks/low_data.py " + " ".join(argv)


def train(root, budget, methods, seeds, teacher, extra, jobs=1):
    """Run (or finish) every trial of one budget (`extra`: train.py flags
    after the protocol's), in the order given and the student alone last;
    False if one failed. With `jobs` > 1 that many methods train at once,
    each on its share of the cores (`TF_NUM_INTRAOP_THREADS`), its output in
    `labels<budget>/<method>.log`."""
    directory = os.path.join(root, f"labels{budget}")

    def run(method):
        command = [sys.executable, os.path.join(ROOT, "scripts", "autotrain.py"),
                   f"--methods={method}", f"--trials={seeds}", f"--root={directory}", "--",
                   *PROTOCOL, f"--labels_per_class={budget}", f"--teacher={teacher}",
                   f"--init_epoch={init_epochs(method, TRAIN_EPOCH)}", *METHOD_FLAGS, *extra]
        if jobs == 1:
            return subprocess.run(command, cwd=ROOT).returncode == 0
        threads = str(max(1, (os.cpu_count() or 1) // jobs))
        os.makedirs(directory, exist_ok=True)
        log = os.path.join(directory, f"{method}.log")
        print(f"{method}: training (its output: {log})\n", end="", flush=True)   # one write
        with open(log, "a", encoding="utf-8") as output:
            ok = subprocess.run(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                env={**os.environ, "TF_NUM_INTRAOP_THREADS": threads,
                                     "TF_NUM_INTEROP_THREADS": threads}).returncode == 0
        print(f"{method}: {'done' if ok else 'FAILED, see ' + log}\n", end="", flush=True)
        return ok

    # the cheapest run, the student alone's, goes last: side by side it fills a core while
    # the last distilled run ends (the longest first: list them so)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return all(list(pool.map(run, sorted(methods, key=lambda m: m == BASELINE))))


def accuracies(root, budget, method, seeds):
    """`{seed: last test accuracy}` of the finished trials (others are not results)."""
    found = {}
    for seed in range(seeds):
        record = run_record.read(os.path.join(root, f"labels{budget}", method, f"trial{seed}"))
        if record is not None and record["state"] == run_record.FINISHED:
            found[seed] = record["metrics"]["last_accuracy"]
    return found


def compare(method_acc, baseline_acc):
    """Mean and standard deviation (n - 1) of a method's accuracy, and its
    gain over the student of the same seeds: mean and standard deviation of
    the paired differences, and the gain over the pooled standard deviation
    of the two methods."""
    values = np.array(list(method_acc.values()))
    row = {"seeds": sorted(method_acc), "mean": values.mean(),
           "std": values.std(ddof=1) if len(values) > 1 else None}
    paired = sorted(set(method_acc) & set(baseline_acc))
    if len(paired) > 1:
        gain = np.array([method_acc[s] - baseline_acc[s] for s in paired])
        base = np.array([baseline_acc[s] for s in paired])
        mine = np.array([method_acc[s] for s in paired])
        pooled = np.sqrt((mine.var(ddof=1) + base.var(ddof=1)) / 2)
        row.update(paired=len(paired), gain=gain.mean(), gain_std=gain.std(ddof=1),
                   gain_over_pooled_std=gain.mean() / pooled if pooled > 0 else float("inf"))
    elif len(paired) == 1:
        row.update(paired=1, gain=method_acc[paired[0]] - baseline_acc[paired[0]])
    return row


def summarise(root, seeds):
    """Every budget and method trained under `root` (also by earlier
    commands), in budget order and `DISTILLERS` order."""
    budgets = sorted(int(name[len("labels"):]) for name in os.listdir(root)
                     if name.startswith("labels") and name[len("labels"):].isdigit())
    runs = {}
    for budget in budgets:
        trained = set(os.listdir(os.path.join(root, f"labels{budget}")))
        found = {m: accuracies(root, budget, m, seeds) for m in DISTILLERS if m in trained}
        runs[str(budget)] = {m: acc for m, acc in found.items() if acc}
    summary = {b: {m: compare(acc, methods.get(BASELINE, {})) for m, acc in methods.items()}
               for b, methods in runs.items()}
    return runs, summary


def table(summary, seeds, reference=None):
    """The report's rows; `reference`: another result's summary, whose
    accuracy and gain are set beside these."""
    lines = ["| labels per class | method | seeds | test accuracy (%) | paired gain | "
             "gain / pooled std |" + (" benchmark: accuracy | benchmark: gain |" if reference
                                      else ""),
             "| ---: | --- | ---: | --- | --- | ---: |" + (" --- | --- |" if reference else "")]
    for budget, rows in summary.items():
        for method, row in rows.items():
            spread = f"{row['mean']:.2f}" + (f" ± {row['std']:.2f}" if len(row["seeds"]) > 1
                                             else "")
            gain = ratio = ""
            if method != BASELINE and "gain_std" in row:
                gain = f"{row['gain']:+.2f} ± {row['gain_std']:.2f}"
                ratio = f"{row['gain_over_pooled_std']:.1f}"
            elif method != BASELINE and "gain" in row:
                gain = f"{row['gain']:+.2f}"
            line = (f"| {budget} | {method} | {len(row['seeds'])}/{seeds} | {spread} | {gain} | "
                    f"{ratio} |")
            if reference:
                other = reference.get(budget, {}).get(method)
                line += (" |  |" if other is None else
                         f" {other['mean']:.2f} ± {other['std']:.2f} ({len(other['seeds'])}) | "
                         + (f"{other['gain']:+.2f} ± {other['gain_std']:.2f} |"
                            if method != BASELINE and "gain_std" in other else " |"))
            lines.append(line)
    return lines


def plot(summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(6, 4))
    budgets = [int(b) for b in summary]
    methods = list(dict.fromkeys(m for rows in summary.values() for m in rows))
    for i, method in enumerate(methods):
        points = [(b, summary[str(b)][method]) for b in budgets if method in summary[str(b)]]
        shift = 1 + 0.04 * (i - (len(methods) - 1) / 2)     # side by side, not on top
        axes.errorbar([b * shift for b, _ in points], [r["mean"] for _, r in points],
                      yerr=[r["std"] or 0 for _, r in points], capsize=3,
                      marker="o", label="student alone" if method == BASELINE else method)
    axes.set_xscale("log")
    axes.set_xticks(budgets, [str(b) for b in budgets])
    axes.minorticks_off()
    axes.set_xlabel("labelled training images per class")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Fashion-MNIST: ResNet32-shaped teacher -> ResNet8-shaped student")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    with files.replacing(path) as partial:
        figure.savefig(partial, dpi=120, bbox_inches="tight", format="png")
    plt.close(figure)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(
        key for key, method in DISTILLERS.items() if not method.data_free),
                        help="comma-separated --Distillation keys (None: the student "
                        "alone, always run); by default all but the data-free DFKD")
    parser.add_argument("--budgets", default="10,50,100",
                        help="comma-separated labelled images per class")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1,
                        help="methods trained at once, each on its share of the cores (small "
                        "networks use two cores poorly: 2 on a 2-core CPU is faster)")
    parser.add_argument("--teacher", default=TEACHER)
    parser.add_argument("--root", default="runs/low_data")
    parser.add_argument("--out", default="benchmarks/results/low_data")
    parser.add_argument("--report_only", action="store_true",
                        help="train nothing: report the finished runs under --root")
    parser.add_argument("--reference", default="",
                        help="a results.json (e.g. benchmarks/results/low_data/results.json) "
                        "whose numbers the table sets beside these")
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:len(argv) - len(extra) - bool(extra)])
    methods = list(dict.fromkeys([BASELINE, *args.methods.split(",")]))
    unknown = [m for m in methods if m not in DISTILLERS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; valid: {', '.join(DISTILLERS)}")
    if args.jobs < 1:
        parser.error(f"--jobs={args.jobs}: at least 1")
    budgets = [int(b) for b in args.budgets.split(",")]
    root, out = os.path.abspath(args.root), os.path.abspath(args.out)

    try:
        run_record.finished_artefact(args.teacher, "--teacher")
        if args.reference and not os.path.isfile(args.reference):
            raise UserError(f"--reference={args.reference}: no such file.")
        if args.report_only and not os.path.isdir(root):
            raise UserError(f"--root={args.root}: no such directory, nothing to report.")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    start = time.time()
    complete = args.report_only or all([train(root, budget, methods, args.seeds, args.teacher,
                                              extra, args.jobs) for budget in budgets])
    runs, summary = summarise(root, args.seeds)
    teacher = run_record.read(args.teacher) if os.path.isdir(args.teacher) else None
    result = {"command": command(argv), "date": time.strftime("%Y-%m-%d"),
              "protocol": [*PROTOCOL, *METHOD_FLAGS, *extra],
              "teacher": {"path": os.path.relpath(args.teacher, ROOT),
                          "last_accuracy": teacher and teacher["metrics"]["last_accuracy"]},
              "accuracy": runs, "summary": summary}
    if not args.report_only:
        result["wall_seconds"] = round(time.time() - start)
    os.makedirs(out, exist_ok=True)
    files.write_text(os.path.join(out, "results.json"), json.dumps(result, indent=1) + "\n")
    reference = None
    if args.reference:
        with open(args.reference, encoding="utf-8") as f:
            reference = json.load(f)["summary"]
    lines = table(summary, args.seeds, reference)
    files.write_text(os.path.join(out, "report.md"), "\n".join(lines) + "\n")
    plot(summary, os.path.join(out, "low_data.png"))
    print("\n".join(lines))
    if not complete:
        sys.exit("Some runs failed (their errors are above) and are not counted; run the "
                 "command again to resume them.")
    print(f"Test accuracy at the last epoch on the 10,000 test images, mean ± standard deviation "
          f"over seeds; paired gain: the method minus the student alone of the same seed. "
          f"Table and plot: {out}/report.md, {out}/low_data.png")


if __name__ == "__main__":
    main(sys.argv[1:])
