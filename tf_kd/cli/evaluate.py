"""Evaluate a trained network's top-1 accuracy on a dataset's test split
(pixel accuracy and mean IoU on a segmentation set).

    python test.py --model=runs/student

`--model` is a run directory (its `model.keras`), a `.keras` file, a
SavedModel directory or a TF1-keyed `.mat` file. The dataset and, for a
`.mat` file, the architecture come from the run's record when the file is a
run's; `--dataset`, `--main_scope`, `--model_name` and `--width` give them
otherwise (a TF1 `.mat` file).
"""

from absl import app, flags

import dataloader
from tf_kd import cli, evaluation, run_record
from tf_kd.errors import UserError

F = flags.FLAGS
flags.DEFINE_string("model", None, "A run directory, a .keras file, a SavedModel "
                    "directory or a .mat file.")
flags.DEFINE_string("dataset", "cifar100", "Dataset (default: the run's, else cifar100): "
                    "cifar100, cifar10, fashion_mnist, fashion_mnist_seg or synthetic.")
flags.DEFINE_string("data_dir", "", "Where the dataset files are (default: standard places).")
flags.DEFINE_integer("test_subset", 0, "Use only the first N test images (0: all).")
flags.DEFINE_integer("batch_size", 200, "Evaluation batch size.")
flags.DEFINE_string("model_name", "ResNet", "Architecture of a .mat file outside a run.")
flags.DEFINE_enum("main_scope", "Student", ["Student", "Teacher"],
                  "Scope of a .mat file outside a run.")
flags.DEFINE_float("width", 1.0, "Channel multiplier of a .mat file outside a run.")
flags.mark_flag_as_required("model")

_ARCHITECTURE = ("dataset", "model_name", "main_scope", "width")


def settings(record):
    """The dataset and architecture: the run's, where an explicit flag may
    not contradict them, else the flags'."""
    chosen = {name: F[name].value for name in _ARCHITECTURE}
    if record is None:
        return chosen
    recorded = record["architecture"]
    for name in _ARCHITECTURE:
        if F[name].present and F[name].value != recorded[name]:
            raise UserError(f"--{name}={F[name].value}: the run of --model={F.model} was "
                            f"trained with --{name}={recorded[name]}; drop the flag.")
        chosen[name] = recorded[name]
    return chosen


def _evaluate(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    for flag in ("batch_size", "test_subset"):
        if F[flag].value < (1 if flag == "batch_size" else 0):
            raise UserError(f"--{flag}={F[flag].value}: must be positive.")
    path, record = run_record.finished_artefact(F.model, "--model")
    chosen = settings(record)
    data = dataloader.load(chosen["dataset"], data_dir=F.data_dir or None,
                           test_subset=F.test_subset or None)
    logits_fn = evaluation.load_logits_fn(path, data, chosen)
    confusion = evaluation.confusion_matrix(logits_fn, data, F.batch_size, path)
    if data.segmentation:
        print(f"Pixel accuracy: {evaluation.accuracy(confusion):.2f}%, "
              f"mIoU: {evaluation.mean_iou(confusion):.2f}%")
    else:
        print(f"Top-1 accuracy: {evaluation.accuracy(confusion):.2f}%")


def run():
    """The `tf-kd-test` command."""
    cli.run(_evaluate, __name__, __doc__)
