"""Run N trials of one or more methods, as TF1's `autotrain.py` did.

    python scripts/autotrain.py --methods=None,MHGD --trials=5 --root=runs/cifar100 \
        -- --dataset=cifar100 --teacher=pre_trained/ResNet.mat

Trial `i` of method `M` trains in `root/M/trial{i}` with `--seed=i`. Finished
trials (with `train_params.mat`) are skipped and an interrupted one is
resumed, so the command can simply be run again. Arguments after `--` go to
every `train.py` call. When `Teacher` is among the methods and no
`--teacher` is given, the other methods distil from `root/Teacher/trial0`, so
one command trains the teacher and then every student.
"""

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
        teacher = [f"--teacher={os.path.join(args.root, 'Teacher', 'trial0', 'model.keras')}"]
    for method in methods:
        for seed, train_dir in enumerate(trial_dirs(args.root, method, args.trials)):
            if os.path.exists(os.path.join(train_dir, "train_params.mat")):
                print(f"{train_dir}: finished, skipped")
                continue
            flags = (["--main_scope=Teacher"] if method == "Teacher"
                     else [f"--Distillation={method}", *teacher])
            if os.path.isdir(os.path.join(train_dir, "backup")):
                flags.append("--resume")
            command = [sys.executable, os.path.join(ROOT, "train.py"), *flags,
                       f"--train_dir={train_dir}", f"--seed={seed}", *extra]
            print(" ".join(command), flush=True)
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
