"""Run N trials of one or more methods, as TF1's `autotrain.py` did.

    python scripts/autotrain.py --methods=None,MHGD --trials=5 --root=runs/cifar100 \
        -- --dataset=cifar100 --teacher=pre_trained/ResNet.mat

Trial `i` of method `M` trains in `root/M/trial{i}` with `--seed=i`, always
through `train.py --resume`: a new trial starts, an interrupted or failed one
continues from its last good epoch, a finished one is left as it is (a
`state/` a kill left there is removed), so the command can simply be run
again. A trial recorded with other flags is refused, naming them (a new
setting needs another `--root`), as is a trial another process trains.
A trial that fails does not stop the others; the command ends by listing
the failed trials and exits with status 1 if there are any. Arguments after
`--` go to every `train.py` call that takes them: `--teacher` and
`--teacher_precision` only to the methods that distil from a trained
teacher, a method's own flags (`--nst_*`, `--dfkd_*`, ...) only to it,
`--teacher_model_name` to the methods with a teacher and, as its
`--model_name`, to `Teacher`. A `--flagfile` (e.g. a recipe of
`recipes/cifar100/`) is read as `train.py` reads it and its flags are
given out the same way; a `--Distillation` there (a method's recipe) is
left to `--methods`, which must name it. When `Teacher` is among
the methods and no `--teacher` is given, the other methods distil from
`root/Teacher/trial0`, so one command trains the teacher and then every
student (none starts if the teacher does not finish).

SIGTERM, SIGINT (Ctrl-C) and, unless ignored, SIGHUP are passed on to the
running `train.py` (in its own session, it gets them from autotrain alone,
once), which records the interruption; autotrain waits for it to end and
exits with status 130. Running the command again resumes the trial.
"""

import argparse
import os
import signal
import subprocess
import sys

from absl import flags as absl_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tf_kd.cli import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()    # without TensorFlow's start-up banners, as train.py
from tf_kd import config  # noqa: E402

EXIT_INTERRUPTED = 130
received = []     # the signals to pass on, in order


def trial_dirs(root, method, trials):
    return [os.path.join(root, method, f"trial{i}") for i in range(trials)]


def pass_signals_on():
    """Receive SIGTERM, SIGINT and SIGHUP (unless ignored) into `received`."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, lambda signum, frame: received.append(signum))


def run(command):
    """The exit status of `command`, the signals received meanwhile passed on."""
    child = subprocess.Popen(command, start_new_session=True)
    passed = 0
    while True:
        while passed < len(received):
            child.send_signal(received[passed])
            passed += 1
        try:
            return child.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass


def stop_if_interrupted():
    if received:
        print(f"autotrain: interrupted ({signal.Signals(received[0]).name}); run the "
              "command again to resume.", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


def teacher_network(flags, extra):
    """A teacher trial's `flags` with `--teacher_model_name`'s network (in
    `extra`) as its `--model_name`."""
    names = [a.split("=", 1)[1] for a in extra if a.startswith("--teacher_model_name=")]
    if not names:
        return flags
    return [a for a in flags if not a.startswith("--model_name=")] + [f"--model_name={names[-1]}"]


def expand_flagfiles(args):
    """`args` with each `--flagfile` replaced by the flags its file holds,
    read as absl reads them for `train.py` (nested files, comments left out),
    so that each flag goes only to the trials that take it."""
    try:
        return absl_flags.FlagValues().read_flags_from_files(args, force_gnu=True)
    except absl_flags.Error as error:
        sys.exit(f"autotrain: {' '.join(str(error).replace('ERROR::', '').split())}")


def left_to_methods(extra, methods):
    """`extra` without its `--Distillation` flags, each of which must name
    one of `methods` (a method's recipe file sets one: `--methods` decides
    each trial's method)."""
    for arg in extra:
        if arg.startswith("--Distillation=") and arg.split("=", 1)[1] not in methods:
            sys.exit(f"autotrain: {arg} (after --): each trial's method comes from --methods="
                     f"{','.join(methods)}; add it there or drop the flag.")
    return [a for a in extra if not a.startswith("--Distillation=")]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", required=True,
                        help="comma-separated --Distillation keys; 'Teacher' trains the teacher")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--root", required=True, help="parent of the train_dirs")
    args, extra = parser.parse_known_args(argv)
    methods = args.methods.split(",")
    extra = left_to_methods(expand_flagfiles([a for a in extra if a != "--"]), methods)
    teacher = []
    if "Teacher" in methods and not any(a.startswith("--teacher=") for a in extra):
        methods.sort(key=lambda m: m != "Teacher")      # the teacher first
        teacher = [f"--teacher={os.path.join(args.root, 'Teacher', 'trial0')}"]
    pass_signals_on()
    failed = []
    for method in methods:
        for seed, train_dir in enumerate(trial_dirs(args.root, method, args.trials)):
            stop_if_interrupted()
            distils = method != "Teacher" and config.takes_teacher(method)
            flags = (["--main_scope=Teacher"] if method == "Teacher"
                     else [f"--Distillation={method}", *(teacher if distils else [])])
            flags += [a for a in extra if config.takes_flag(method, a.split("=")[0])]
            if method == "Teacher":
                flags = teacher_network(flags, extra)
            command = [sys.executable, os.path.join(ROOT, "train.py"), *flags,
                       f"--train_dir={train_dir}", f"--seed={seed}", "--resume"]
            print(" ".join(command), flush=True)
            status = run(command)
            stop_if_interrupted()
            if status != 0:
                failed.append(train_dir)
                if method == "Teacher" and seed == 0 and teacher:
                    sys.exit(f"The teacher {train_dir} did not finish; no student can "
                             "distil from it.")
    if failed:
        sys.exit("Failed trials (their errors are above; run the command again to resume "
                 "them):\n  "
                 + "\n  ".join(failed))


if __name__ == "__main__":
    main(sys.argv[1:])
