"""Evaluate a trained network's top-1 accuracy on a dataset's test split
(pixel accuracy and mean IoU on a segmentation set).

    python test.py --model=runs/student

`--model` is a run directory (its `model.keras`), a `.keras` file, a
SavedModel directory or a TF1-keyed `.mat` file. The dataset, the test
images the run was validated on (`--test_subset`) and, for a `.mat` file,
the architecture come from the run's record when the file is a run's;
`--dataset`, `--main_scope`, `--model_name` and `--width` give them
otherwise (a TF1 `.mat` file). The printed accuracy says which test images
it scored.

A SavedModel is code: loading and calling it runs the graph it holds, so
name one only from a source you trust. `.keras` files load in Keras' safe
mode and `.mat` files are arrays; a run directory loads its `model.keras`.
"""

import dataclasses
import os
import sys

from absl import flags

from tf_kd import cli
from tf_kd.errors import UserError

F = flags.FLAGS
_ARCHITECTURE = ("dataset", "model_name", "main_scope", "width")


def define_flags():
    """Define the flags on absl's `FLAGS`, as the program starts (`cli.run`)."""
    flags.DEFINE_string("model", None, "A run directory (its model.keras), a .keras file, a "
                        "SavedModel directory (code: only from a trusted source) or a .mat file.")
    flags.DEFINE_string("dataset", "cifar100", "Dataset (default: the run's, else cifar100): "
                        "cifar100, cifar10, fashion_mnist, fashion_mnist_seg or synthetic.")
    flags.DEFINE_string("data_dir", "",
                        "Where the dataset files are (default: standard places).")
    flags.DEFINE_integer("test_subset", 0, "Score only the first N test images (0: all; "
                         "default: the run's --test_subset, else all).")
    flags.DEFINE_integer("batch_size", 200, "Evaluation batch size.")
    flags.DEFINE_string("model_name", "ResNet", "Architecture of a .mat file outside a run.")
    flags.DEFINE_enum("main_scope", "Student", ["Student", "Teacher"],
                      "Scope of a .mat file outside a run.")
    flags.DEFINE_float("width", 1.0, "Channel multiplier of a .mat file outside a run.")
    flags.mark_flag_as_required("model")


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


def subset(record):
    """How many test images to score (0: all): `--test_subset` if given,
    else the run's."""
    if F["test_subset"].present or record is None:
        return F.test_subset
    return record["config"]["test_subset"]


def _evaluate(argv):
    import dataloader    # TensorFlow: imported as the program starts, not with this module
    from tf_kd import evaluation, run_record

    if F.batch_size < 1:
        raise UserError(f"--batch_size={F.batch_size}: must be at least 1.")
    if F.test_subset < 0:
        raise UserError(f"--test_subset={F.test_subset}: must be 0 (all) or positive.")
    path, record = run_record.finished_artefact(F.model, "--model")
    chosen = settings(record)
    if os.path.isdir(path):
        print(f"warning: --model={path} is a SavedModel: it runs the graph it holds, as "
              "code; load one only from a trusted source.", file=sys.stderr)
    data = dataloader.load(chosen["dataset"], data_dir=F.data_dir or None)
    total, count = len(data.test_labels), subset(record)
    scored = f"the {total} test images"
    if 0 < count < total:
        data = dataclasses.replace(data, test_images=data.test_images[:count],
                                   test_labels=data.test_labels[:count])
        scored = f"first {count} of the {total} test images"
    logits_fn = evaluation.load_logits_fn(path, data, chosen)
    confusion = evaluation.confusion_matrix(logits_fn, data, F.batch_size, path)
    if data.segmentation:
        print(f"Pixel accuracy: {evaluation.accuracy(confusion):.2f}%, "
              f"mIoU: {evaluation.mean_iou(confusion):.2f}% ({scored})")
    else:
        print(f"Top-1 accuracy: {evaluation.accuracy(confusion):.2f}% ({scored})")


def run():
    """The `tf-kd-test` command."""
    cli.run(_evaluate, define_flags, __name__, __doc__)
