"""One training run, as TF1's `train_w_distill.py` does it, on Keras `fit`.

Writes into `train_dir` what TF1 wrote (`log.mat` with `training_acc` and
`validation_acc` in percent, `train_params.mat` with the main scope's
variables, TensorBoard events) plus the trained network as `model.keras`, a
SavedModel and a TensorFlow Lite model (`tf_kd.exports`), and the run's
record `run.json` (`tf_kd.run_record`).

A run never loses work: it holds its train_dir's lock (`tf_kd.lock`) from
start to end, so a second run there is refused; every flag, the data and the
teacher are checked before anything on disk changes; after every epoch the
state is saved (`tf_kd.checkpoint`) and kept until every export is in place;
the record is written last, so a run is finished only when it says so (and
stays so: a signal waits until the state is removed); a non-finite loss
or weight stops the run (`tf_kd.guard`) and marks it failed. A run resumed
with `resume=True` from any interruption ends as the uninterrupted run.
"""

import contextlib
import dataclasses
import os
import sys
import time

import keras
import numpy as np
import scipy.io as sio

import dataloader
import nets
from dataloader import budget
from tf_kd import (checkpoint, distribution, exports, files, guard, lock, optimizers,
                   run_record, schedules, tf1_weights, train_dir, transfer_set)
from tf_kd.config import Config, default_train_dir, validate
from tf_kd.distillers import get_distiller
from tf_kd.errors import Diverged, UserError
from tf_kd.transfer_set import Synthesis

__all__ = ["Config", "Result", "train"]


@dataclasses.dataclass
class Result:
    """A finished run: its directory, its per-epoch metrics (the whole run,
    resumed parts included) and its record."""
    train_dir: str
    history: dict
    record: dict


def architecture(config, data, scope, model_name=None):
    """What `test.py` and `--teacher` need to rebuild a run's network."""
    return {"model_name": model_name or config.model_name, "main_scope": scope,
            "width": config.width, "dataset": config.dataset, "num_classes": data.num_classes,
            "image_shape": list(data.image_shape)}


@contextlib.contextmanager
def dtype_policy(name):
    """Keras' global dtype policy set to `name` inside the block."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_network(config, data, scope, width=None, model_name=None, precision=None):
    """A network of `config`'s architecture in `precision` (default:
    `config.precision`; its named outputs in float32; the methods' own modules
    stay float32)."""
    model_name = model_name or config.model_name
    with dtype_policy(precision or config.precision):
        network = nets.get_network(model_name)(
            input_shape=data.image_shape, num_classes=data.num_classes,
            scope=scope, width=config.width if width is None else width,
            weight_decay=config.weight_decay)
    if (len(network.output["logits"].shape) == 4) != data.segmentation:
        raise UserError(f"--model_name={model_name} does not predict what "
                        f"--dataset={config.dataset} labels (segmentation: FCN).")
    return network


def teacher_model_name(config):
    """The teacher's network: `--teacher_model_name`, else `--model_name`
    (for ResNet and FCN, its `Teacher` depth)."""
    return config.teacher_model_name or config.model_name


def load_teacher(config, data):
    """The trained teacher of `config.teacher` (a run directory, a `.keras`
    or a `.mat` file) of `--teacher_model_name`'s network, checked against
    its run record where it has one; refused if unfinished, of another
    architecture or non-finite."""
    path, record = run_record.finished_artefact(config.teacher, "--teacher")
    shape = architecture(config, data, "Teacher", teacher_model_name(config))
    if record is not None:
        recorded = record["architecture"]
        for key in ("main_scope", "model_name", "num_classes", "image_shape", "width"):
            if recorded[key] != shape[key]:
                flag = {"num_classes": "dataset", "image_shape": "dataset"}.get(key, key)
                fix = {"main_scope": "train a teacher with --main_scope=Teacher",
                       "model_name": f"pass --teacher_model_name={recorded[key]} or another "
                                     "teacher"}.get(
                    key, f"pass --{flag}={record['config'][flag]} or another teacher")
                raise UserError(
                    f"--teacher={config.teacher} was trained with {key} {recorded[key]!r} "
                    f"(--{flag}={record['config'][flag]}), this run has {shape[key]!r}: "
                    f"{fix}.")
    teacher = build_network(config, data, "Teacher", model_name=teacher_model_name(config),
                            precision=config.teacher_precision or config.precision)
    try:
        count = tf1_weights.load_weights(teacher, path)
    except UserError as error:
        raise UserError(f"--teacher={path}: {error} (This run's teacher is "
                        f"--teacher_model_name={teacher_model_name(config)}.)") from None
    guard.check_weights(teacher, f"--teacher={path}")
    print(f"{count} Teacher params assigned")
    return teacher


def build_distiller(config, data):
    """The distiller of `config.Distillation`, teacher weights loaded."""
    method = get_distiller(config.Distillation)
    student = build_network(config, data, config.main_scope)
    kwargs = {}
    if method.needs_teacher:
        kwargs["teacher"] = (load_teacher(config, data) if method.pretrained_teacher
                             else build_network(config, data, "Teacher",
                                                model_name=teacher_model_name(config)))
    if config.init_epoch >= 0:
        kwargs["init_epoch"] = config.init_epoch
    if method.example_indices:
        kwargs["train_labels"] = data.example_labels
    kwargs.update({argument: getattr(config, flag)
                   for flag, argument in method.flags.items() if argument})
    return method(student, **kwargs)


def load_data(config):
    """`(data, labels)`: the run's data, under `--labels_per_class` its
    labelled budget (the rest without labels for a method that distils,
    unless `--unlabeled=none`) and the record of what was drawn, else None."""
    method = get_distiller(config.Distillation)
    load = dataloader.load_test if method.data_free else dataloader.load
    subsets = {} if method.data_free else {"train_subset": config.train_subset or None}
    data = load(config.dataset, data_dir=config.data_dir or None,
                test_subset=config.test_subset or None, seed=config.seed, **subsets)
    if not method.data_free and len(data.train_labels) < config.batch_size:
        raise UserError(f"--batch_size={config.batch_size}: only {len(data.train_labels)} "
                        "training examples; lower it or raise --train_subset.")
    if not config.labels_per_class:
        return data, None
    return budget.apply(data, config.labels_per_class, config.seed,
                        keep_unlabeled=config.unlabeled == "rest" and method.needs_teacher)


def schedule_note(config, init_epoch):
    """A line saying so where the schedule starts below `--learning_rate`
    (TF1's decay points `int(train_epoch * p)` are 0 below 4 epochs, the
    reference's `m * train_epoch // 240` below 2), else None."""
    first = schedules.rate(config.schedule, init_epoch, config.learning_rate, init_epoch,
                           config.train_epoch)
    if first == config.learning_rate:
        return None
    how = ("TF1's schedule (x0.1 at epochs "
           f"int({config.train_epoch} * 0.3 / 0.6 / 0.8) after initialisation)"
           if config.schedule == "tf1" else
           "the reference schedule (x0.1 at epochs 150 / 180 / 210 * "
           f"{config.train_epoch} // 240 after initialisation)")
    return (f"note: with --train_epoch={config.train_epoch} {how} starts training at "
            f"learning rate {first:g}, not --learning_rate={config.learning_rate:g}.")


def transfer_set_path(config):
    return config.transfer_set or os.path.join(config.train_dir, "transfer_set.npz")


def train(config, callbacks=()):
    """Run (or resume) one training job; returns its `Result`. `callbacks`
    are added to the run's own. Bad input, or another run holding the
    train_dir, raises `UserError` before anything on disk changes; a
    divergence raises `Diverged` and marks the run failed."""
    if not config.train_dir:
        config = dataclasses.replace(config, train_dir=default_train_dir(config))
    validate(config)
    with lock.held(config.train_dir):
        return _run(config, callbacks)


def _run(config, callbacks):
    """`train`, its train_dir locked."""
    action, record = train_dir.plan(config)
    if action == train_dir.FINISHED:
        if train_dir.remove_leftover_state(config.train_dir):
            print(f"{config.train_dir}: removed the state/ that a kill left after the run "
                  "finished.")
        print(f"{config.train_dir}: already finished, nothing to do.")
        return Result(config.train_dir, record["history"], record)
    strategy = distribution.make(config.strategy)
    keras.utils.set_random_seed(config.seed)
    data, labels = load_data(config)
    with strategy.scope():
        distiller = build_distiller(config, data)
    method = type(distiller)
    if method.data_free:
        transfer_set.check_fits(transfer_set_path(config), distiller.teacher, data,
                                config.dfkd_noise_baseline)

    # -- Everything is checked: from here on the disk changes. --
    if action == train_dir.OVERWRITE:
        kept = train_dir.clear(config.train_dir)
        if kept:
            print(f"--overwrite kept what is not this project's: {', '.join(kept)}")
    epochs = distiller.init_epoch + config.train_epoch
    if action != train_dir.RESUME:
        record = {"format": run_record.FORMAT, "config": config.settings(),
                  "architecture": architecture(config, data, config.main_scope),
                  "input": dataloader.input_description(data),
                  "versions": run_record.versions(), "epochs": epochs, "epochs_done": 0,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if labels is not None:
            record["labels"] = labels
    record["execution"] = config.execution()
    record["state"] = run_record.RUNNING
    record.pop("reason", None)
    run_record.write(config.train_dir, record)
    note = schedule_note(config, distiller.init_epoch)
    if note:
        print(note)
    try:
        with strategy.scope():
            history = _fit(config, data, distiller, record, epochs, callbacks)
    except Diverged as error:
        _fail(config.train_dir, record, f"diverged at {error}")
        raise
    except KeyboardInterrupt as error:
        _fail(config.train_dir, record, f"interrupted ({str(error) or 'Ctrl-C'}); --resume "
              "continues it")
        raise
    except BaseException as error:
        _fail(config.train_dir, record, f"{type(error).__name__}: {error}")
        raise
    return Result(config.train_dir, history, record)


def _fail(directory, record, reason):
    """Record the run failed for `reason`; called while handling the error,
    a full disk's reason says so (the record has room kept for it)."""
    if record["state"] == run_record.FINISHED:    # a signal held back until it finished
        return
    error = sys.exc_info()[1]
    if isinstance(error, OSError) and error.errno in files.FULL:
        reason = (f"no space left on the device writing {error.filename or 'a file'}; "
                  "free space, then --resume")
    record.update(state=run_record.FAILED, reason=reason)
    try:
        run_record.write(directory, record)
    except OSError:     # the record stays as it was: unfinished
        pass


def _fit(config, data, distiller, record, epochs, callbacks):
    """Train from the last saved epoch, export, and mark the run finished."""
    if type(distiller).data_free:
        data = with_transfer_set(config, data, distiller.teacher)
    steps = dataloader.steps_per_epoch(data, config.batch_size)
    optimizer = optimizers.Momentum(config.learning_rate,
                                    use_nesterov=schedules.NESTEROV[config.schedule])
    if config.precision == "mixed_float16":      # float16 gradients need loss scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    distiller.compile(optimizer=optimizer, jit_compile=config.jit_compile)
    state_dir = os.path.join(config.train_dir, checkpoint.DIRECTORY)
    done, history = checkpoint.restore(distiller, state_dir)
    if done:
        print(f"Resuming {config.train_dir} after epoch {done} of {epochs}.")
    init_epoch = distiller.init_epoch
    log_path = os.path.join(config.train_dir, "log.mat")

    def schedule(epoch):
        return schedules.rate(config.schedule, epoch, config.learning_rate, init_epoch,
                              config.train_epoch)

    def saved(epochs_done, history):
        write_log(log_path, history)
        record["epochs_done"] = epochs_done
        run_record.write(config.train_dir, record)

    saver = checkpoint.EpochCheckpoint(state_dir, history, on_saved=saved)
    run_callbacks = [
        schedules.EpochSchedule(schedule),
        guard.NonFiniteGuard(),
        saver,
        keras.callbacks.TensorBoard(config.train_dir, profile_batch=0),
        *callbacks,
    ]
    train_set = dataloader.train_pipeline(
        data, config.batch_size, seed=config.seed, first_epoch=done,
        replicas=distiller.distribute_strategy.num_replicas_in_sync,
        indices=type(distiller).example_indices)
    test_set = dataloader.test_pipeline(data, config.val_batch_size)
    distiller.fit(train_set, validation_data=test_set, epochs=epochs, initial_epoch=done,
                  steps_per_epoch=steps, callbacks=run_callbacks, verbose=config.verbose,
                  shuffle=False)   # the pipeline shuffles
    history = saver.history
    write_log(log_path, history)
    student = distiller.student
    if config.precision != "float32":    # export the float32 network with the trained weights
        student = build_network(dataclasses.replace(config, precision="float32"), data,
                                config.main_scope)
        student.set_weights(distiller.student.get_weights())
    artefacts = exports.save_network(student, config.train_dir, config.export_list(),
                                     config.export_features)
    record.update(state=run_record.FINISHED, history=history, metrics=final_metrics(history),
                  artefacts=["log.mat", *artefacts], finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  sha256={"model.keras": run_record.sha256(
                      os.path.join(config.train_dir, "model.keras"))})
    train_dir.finish(config.train_dir, record)
    return history


def final_metrics(history):
    """Last and best validation accuracy (and mIoU), in %."""
    metrics = {}
    for key, name in (("val_accuracy", "accuracy"), ("val_miou", "miou")):
        if key in history:
            values = 100 * np.asarray(history[key])
            metrics[f"last_{name}"], metrics[f"best_{name}"] = float(values[-1]), float(values.max())
    return metrics


def write_log(path, history):
    """TF1's `log.mat`: `training_acc`, `validation_acc` (and for segmentation
    `validation_miou`) per epoch, in %."""
    log = {"training_acc": 100 * np.asarray(history.get("accuracy", [])),
           "validation_acc": 100 * np.asarray(history.get("val_accuracy", []))}
    if "val_miou" in history:
        log["validation_miou"] = 100 * np.asarray(history["val_miou"])
    with files.replacing(path) as partial:
        sio.savemat(partial, log)


def read_log(path):
    """`log.mat` as `{name: 1-D array}`; a damaged file is a `UserError`."""
    return {k: np.ravel(v) for k, v in tf1_weights.read_mat(path).items()}


def with_transfer_set(config, data, teacher):
    """DFKD: `data` with the transfer set as its training split (images and
    the teacher's top-1 classes), loaded from `config.transfer_set` or built
    and saved there; by default `train_dir/transfer_set.npz`, which a resumed
    run reuses."""
    synthesis = None if config.dfkd_noise_baseline else Synthesis(
        config.dfkd_sigma, config.dfkd_tau, config.dfkd_steps,
        config.dfkd_learning_rate, config.dfkd_activation_weight)
    pseudo = transfer_set.load_or_build(
        transfer_set_path(config), teacher, config.transfer_size, data.mean, data.std,
        synthesis, config.batch_size, config.seed, verbose=config.verbose > 0)
    print(pseudo.summary())
    return dataclasses.replace(data, train_images=pseudo.images, train_labels=pseudo.labels)
