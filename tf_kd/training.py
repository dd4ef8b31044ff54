"""One training run, as TF1's `train_w_distill.py` does it, on Keras `fit`.

Writes into `train_dir` what TF1 wrote (`log.mat` with `training_acc` and
`validation_acc` in percent, `train_params.mat` with the main scope's
variables, TensorBoard events) plus the trained network as `model.keras`, a
SavedModel (`saved_model/`) and a TensorFlow Lite model (`model.tflite`). A `backup/` directory holds the state of an
unfinished run so that `resume=True` continues it from its last epoch.
"""

import dataclasses
import os
import shutil

import keras
import numpy as np
import scipy.io as sio
import tensorflow as tf

import dataloader
import nets
from tf_kd import optimizers, schedules, tf1_weights, transfer_set
from tf_kd.distillers import get_distiller
from tf_kd.transfer_set import Synthesis


@dataclasses.dataclass
class Config:
    """The run's settings; `train.py` fills them from its flags."""
    train_dir: str = "test"
    Distillation: str = "None"
    dataset: str = "cifar100"
    model_name: str = "ResNet"
    main_scope: str = "Student"
    train_epoch: int = 100
    init_epoch: int = -1          # -1: the method's TF1 value
    batch_size: int = 128
    val_batch_size: int = 200
    learning_rate: float = 0.1
    weight_decay: float = 5e-4
    seed: int = 0
    teacher: str = ""
    width: float = 1.0
    train_subset: int = 0
    test_subset: int = 0
    data_dir: str = ""
    nst_kernel: str = "poly"
    nst_with_kd: bool = False
    transfer_set: str = ""        # DFKD: .npz to reuse or write; "": train_dir/transfer_set.npz
    transfer_size: int = 10000
    dfkd_noise_baseline: bool = False
    dfkd_sigma: float = Synthesis.sigma
    dfkd_tau: float = Synthesis.tau
    dfkd_steps: int = Synthesis.steps
    dfkd_learning_rate: float = Synthesis.learning_rate
    dfkd_activation_weight: float = Synthesis.activation_weight
    resume: bool = False
    overwrite: bool = False
    verbose: int = 1


class TrainingLog(keras.callbacks.Callback):
    """Keeps TF1's `log.mat` up to date after every epoch (accuracies in %;
    for segmentation also `validation_miou`)."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.log = {"training_acc": [], "validation_acc": []}
        if os.path.exists(path):
            saved = sio.loadmat(path)
            self.log = {k: list(np.ravel(v)) for k, v in saved.items()
                        if not k.startswith("__")}

    def on_epoch_begin(self, epoch, logs=None):
        # A resumed run restarts at `epoch`: forget what came after it.
        self.log = {k: v[:epoch] for k, v in self.log.items()}

    def on_epoch_end(self, epoch, logs=None):
        self.log["training_acc"].append(100 * logs["accuracy"])
        self.log["validation_acc"].append(100 * logs["val_accuracy"])
        if "val_miou" in logs:
            self.log.setdefault("validation_miou", []).append(100 * logs["val_miou"])
        sio.savemat(self.path, self.log)


def build_network(config, data, scope):
    network = nets.get_network(config.model_name)(
        input_shape=data.image_shape, num_classes=data.num_classes,
        scope=scope, width=config.width, weight_decay=config.weight_decay)
    if (len(network.output["logits"].shape) == 4) != data.segmentation:
        raise ValueError(f"--model_name={config.model_name} does not predict what "
                         f"--dataset={config.dataset} labels (segmentation: FCN).")
    return network


def build_distiller(config, data):
    """The distiller of `config.Distillation`, teacher weights loaded."""
    method = get_distiller(config.Distillation)
    student = build_network(config, data, config.main_scope)
    kwargs = {}
    if method.needs_teacher:
        teacher = build_network(config, data, "Teacher")
        if method.pretrained_teacher:
            if not config.teacher:
                raise ValueError(
                    f"--Distillation={config.Distillation} needs a trained "
                    "teacher: pass --teacher=<.mat or .keras file>.")
            n = tf1_weights.load_weights(teacher, config.teacher)
            print(f"{n} Teacher params assigned")
        kwargs["teacher"] = teacher
    if config.init_epoch >= 0:
        kwargs["init_epoch"] = config.init_epoch
    if config.Distillation == "NST":
        kwargs.update(kernel=config.nst_kernel, with_kd=config.nst_with_kd)
    if config.Distillation == "DFKD":
        kwargs.update(tau=config.dfkd_tau)
    return method(student, **kwargs)


def prepare_train_dir(config):
    backup = os.path.join(config.train_dir, "backup")
    finished = os.path.exists(os.path.join(config.train_dir, "train_params.mat"))
    if os.path.exists(backup) and not (config.resume or config.overwrite):
        raise FileExistsError(
            f"{config.train_dir} holds an interrupted run: pass --resume to "
            "continue it or --overwrite to start again.")
    if finished and not config.overwrite and not os.path.exists(backup):
        raise FileExistsError(
            f"{config.train_dir} holds a finished run: choose another "
            "--train_dir or pass --overwrite.")
    if config.overwrite:
        shutil.rmtree(config.train_dir, ignore_errors=True)
    os.makedirs(config.train_dir, exist_ok=True)
    return backup


def train(config, callbacks=()):
    """Run one training job; returns the Keras `History`. `callbacks` are
    added to the run's own."""
    method = get_distiller(config.Distillation)   # fail on a bad name before any work
    if config.dataset not in dataloader.DATASETS:
        raise ValueError(f"Unknown dataset {config.dataset!r}; valid: "
                         f"{', '.join(dataloader.DATASETS)}.")
    backup = prepare_train_dir(config)
    keras.utils.set_random_seed(config.seed)
    if method.data_free:     # the test split and stored constants, no training split
        data = dataloader.load_test(config.dataset, data_dir=config.data_dir or None,
                                    test_subset=config.test_subset or None,
                                    seed=config.seed)
    else:
        data = dataloader.load(config.dataset, data_dir=config.data_dir or None,
                               train_subset=config.train_subset or None,
                               test_subset=config.test_subset or None,
                               seed=config.seed)
    test_set = dataloader.test_pipeline(data, config.val_batch_size)

    distiller = build_distiller(config, data)
    if method.data_free:
        data = with_transfer_set(config, data, distiller.teacher)
    train_set = dataloader.train_pipeline(data, config.batch_size,
                                          seed=config.seed)
    distiller.compile(optimizer=optimizers.Momentum(config.learning_rate))
    init_epoch = distiller.init_epoch

    def schedule(epoch):
        return schedules.learning_rate(epoch, config.learning_rate, init_epoch,
                                       config.train_epoch)

    callbacks = [
        schedules.EpochSchedule(schedule),
        TrainingLog(os.path.join(config.train_dir, "log.mat")),
        keras.callbacks.TensorBoard(config.train_dir, profile_batch=0),
        keras.callbacks.BackupAndRestore(backup),
        *callbacks,
    ]
    history = distiller.fit(train_set, validation_data=test_set,
                            epochs=init_epoch + config.train_epoch,
                            callbacks=callbacks, verbose=config.verbose,
                            shuffle=False)   # the pipeline shuffles
    save_network(distiller.student, config.train_dir)
    return history


def with_transfer_set(config, data, teacher):
    """DFKD: `data` with the transfer set as its training split (images and
    the teacher's top-1 classes), loaded from `config.transfer_set` or built
    and saved there; by default `train_dir/transfer_set.npz`, which a resumed
    run reuses."""
    synthesis = None if config.dfkd_noise_baseline else Synthesis(
        config.dfkd_sigma, config.dfkd_tau, config.dfkd_steps,
        config.dfkd_learning_rate, config.dfkd_activation_weight)
    pseudo = transfer_set.load_or_build(
        config.transfer_set or os.path.join(config.train_dir, "transfer_set.npz"),
        teacher, config.transfer_size, data.mean, data.std, synthesis,
        config.batch_size, config.seed, verbose=config.verbose > 0)
    print(pseudo.summary())
    return dataclasses.replace(data, train_images=pseudo.images, train_labels=pseudo.labels)


def save_network(network, train_dir):
    """`train_params.mat` (TF1 keys), `model.keras`, a SavedModel and its
    TensorFlow Lite conversion `model.tflite`."""
    tf1_weights.save_mat(network, os.path.join(train_dir, "train_params.mat"))
    network.save(os.path.join(train_dir, "model.keras"))
    saved_model = os.path.join(train_dir, "saved_model")
    network.export(saved_model, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    with open(os.path.join(train_dir, "model.tflite"), "wb") as f:
        f.write(converter.convert())
