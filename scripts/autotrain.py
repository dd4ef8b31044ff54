"""Run N trials of one or more methods, as TF1's `autotrain.py` did.

    python scripts/autotrain.py --methods=None,MHGD --trials=5 --root=runs/cifar100 \
        -- --dataset=cifar100 --teacher=pre_trained/ResNet.mat

Trial `i` of method `M` trains in `root/M/trial{i}` with `--seed=i`. A trial
whose run record says finished is skipped; an interrupted or failed one is
resumed from its last good epoch, so the command can simply be run again.
A trial that fails does not stop the others; the command ends by listing
the failed trials and exits with status 1 if there are any. Arguments after
`--` go to every `train.py` call (`--teacher` and `--teacher_precision` only
to the methods that distil from a trained teacher). When `Teacher` is among
the methods and no `--teacher` is given, the other methods distil from
`root/Teacher/trial0`, so one command trains the teacher and then every
student (none starts if the teacher does not finish).
"""

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tf_kd import config, run_record  # noqa: E402


def trial_dirs(root, method, trials):
    return [os.path.join(root, method, f"trial{i}") for i in range(trials)]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", required=True,
                        help="comma-separated --Distillation keys; 'Teacher' trains the teacher")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--root", required=True, help="parent of the train_dirs")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    methods = args.methods.split(",")
    teacher = []
    if "Teacher" in methods and not any(a.startswith("--teacher=") for a in extra):
        methods.sort(key=lambda m: m != "Teacher")      # the teacher first
        teacher = [f"--teacher={os.path.join(args.root, 'Teacher', 'trial0')}"]
    failed = []
    for method in methods:
        for seed, train_dir in enumerate(trial_dirs(args.root, method, args.trials)):
            record = run_record.read(train_dir) if os.path.isdir(train_dir) else None
            if record is not None and record["state"] == run_record.FINISHED:
                print(f"{train_dir}: finished, skipped")
                continue
            distils = method != "Teacher" and config.takes_teacher(method)
            flags = (["--main_scope=Teacher"] if method == "Teacher"
                     else [f"--Distillation={method}", *(teacher if distils else [])])
            flags += [a for a in extra if distils or a.split("=")[0] not in config.TEACHER_FLAGS]
            if record is not None:
                print(f"{train_dir}: {run_record.describe(record)}; resuming")
                flags.append("--resume")
            command = [sys.executable, os.path.join(ROOT, "train.py"), *flags,
                       f"--train_dir={train_dir}", f"--seed={seed}"]
            print(" ".join(command), flush=True)
            if subprocess.run(command).returncode != 0:
                failed.append(train_dir)
                if method == "Teacher" and seed == 0 and teacher:
                    sys.exit(f"The teacher {train_dir} did not finish; no student can "
                             "distil from it.")
    if failed:
        sys.exit("Failed trials (run the command again to resume them):\n  "
                 + "\n  ".join(failed))


if __name__ == "__main__":
    main(sys.argv[1:])
