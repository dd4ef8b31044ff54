"""A run's settings (`train.py`'s flags, named as in TF1) and their checks.

`validate` refuses every nonsensical value before anything is loaded or
written, naming the flag and the fix.
"""

import dataclasses
import math

import dataloader
import nets
from dataloader import budget
from tf_kd.distribution import STRATEGIES
from tf_kd.distillers import DISTILLERS
from tf_kd.errors import UserError
from tf_kd.exports import DEPLOYMENT as EXPORTS
from tf_kd.schedules import SCHEDULES
from tf_kd.transfer_set import Synthesis


# Keras dtype policies: the networks compute in the second type, keep their
# weights in float32, and hand their named outputs over in float32.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class Config:
    """The run's settings; `train.py` fills them from its flags."""
    train_dir: str = ""           # "": runs/<Distillation>, runs/Teacher for a teacher
    Distillation: str = "None"
    dataset: str = "cifar100"
    model_name: str = "ResNet"
    teacher_model_name: str = ""  # the teacher's network; "": --model_name's
    main_scope: str = "Student"
    train_epoch: int = 100
    init_epoch: int = -1          # -1: the method's TF1 value
    batch_size: int = 128
    val_batch_size: int = 200
    learning_rate: float = 0.1
    schedule: str = "tf1"         # tf_kd.schedules.SCHEDULES: TF1's, or RepDistiller's
    weight_decay: float = 5e-4
    seed: int = 0
    teacher: str = ""
    width: float = 1.0
    train_subset: int = 0
    test_subset: int = 0
    data_dir: str = ""
    kd_alpha: float = 0.7         # Soft_logits: weight of CE (1 - alpha: of the KL)
    kd_temperature: float = 4.0
    kd_t_squared: bool = False    # Soft_logits: the KL times T^2 (Hinton et al.; not TF1)
    logit_standardization: bool = False   # KD, DKD: standardised logits (Sun et al. 2024)
    ls_base_temperature: float = 2.0      # ... their temperature then (the reference's --base-temp)
    ls_kd_weight: float = 9.0             # ... KD's KL weight, DKD's factor on alpha and beta
    dkd_alpha: float = 1.0
    dkd_beta: float = 8.0
    dkd_temperature: float = 4.0
    dkd_warmup: int = 20                  # epochs of DKD's linear warm-up
    dist_beta: float = 1.0
    dist_gamma: float = 1.0
    dist_tau: float = 4.0
    crd_weight: float = 0.8
    crd_feat_dim: int = 128               # CRD's embedding and memory width
    crd_nce_k: int = 16384                # negatives per image
    crd_nce_t: float = 0.07               # temperature
    crd_nce_m: float = 0.5                # momentum of the memory banks
    reviewkd_weight: float = 1.0
    reviewkd_warmup: int = 20             # epochs of ReviewKD's linear warm-up
    irg_w_vert: float = 0.1               # IRG's weights: vertices (logits),
    irg_w_edge: float = 5.0               # ... edges (distances between examples),
    irg_w_tran: float = 5.0               # ... transformation (between two stages)
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
    strategy: str = "default"     # tf_kd.distribution.STRATEGIES
    precision: str = "float32"    # or a Keras mixed-precision policy (PRECISIONS)
    teacher_precision: str = ""   # the frozen teacher's policy; "": --precision's
    jit_compile: bool = False
    labels_per_class: int = 0     # 0: every training image labelled (TF1)
    unlabeled: str = "rest"       # under a budget: "rest" (distilling methods) or "none"
    exports: str = "saved_model,tflite"   # EXPORTS, beside model.keras and train_params.mat
    export_features: bool = False
    resume: bool = False
    overwrite: bool = False
    verbose: int = 1

    def settings(self):
        """The settings that decide what the run computes: a resumed run
        must have the same ones (where the data are, the devices, XLA, how the
        run is started, what it prints and which deployment exports it writes
        may change)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in EXECUTION + ("train_dir", "data_dir", "resume", "overwrite",
                                         "verbose", "exports")}

    def export_list(self):
        """`--exports` as a list."""
        return [e.strip() for e in self.exports.split(",") if e.strip()]

    def execution(self):
        """How the run executes (recorded; may change on `--resume`)."""
        return {k: getattr(self, k) for k in EXECUTION}


# Settings of how a run executes, not of what it computes.
EXECUTION = ("strategy", "jit_compile")


# The flags that only a run distilling from a trained teacher takes.
TEACHER_FLAGS = ("--teacher", "--teacher_precision")


def method_flags(method):
    """The flags of one method only (`Distiller.flags`) that `--Distillation=
    method` takes, and those of a run distilling from a trained teacher."""
    own = [f"--{name}" for name in DISTILLERS[method].flags]
    return own + (list(TEACHER_FLAGS) if takes_teacher(method) else [])


def takes_flag(method, flag):
    """Whether `train.py --Distillation=method` (`Teacher`: a teacher's
    training) takes `flag` (e.g. `--nst_kernel`): a flag of some methods
    only goes to those; `--teacher_model_name` to those with a teacher."""
    if flag == "--teacher_model_name":
        return method != "Teacher" and DISTILLERS[method].needs_teacher
    specific = set(TEACHER_FLAGS) | {f"--{name}" for cls in DISTILLERS.values()
                                     for name in cls.flags}
    return flag not in specific or (method != "Teacher" and flag in method_flags(method))


def default_train_dir(config):
    """`runs/<Distillation>`, or `runs/Teacher` for a teacher."""
    return f"runs/{'Teacher' if config.main_scope == 'Teacher' else config.Distillation}"


def takes_teacher(method):
    """Whether `--Distillation=method` distils from a trained `--teacher`."""
    cls = DISTILLERS[method]
    return cls.needs_teacher and cls.pretrained_teacher


def _require(condition, flag, value, what):
    if not condition:
        raise UserError(f"--{flag}={value}: {what}.")


def validate(config):
    """Raise `UserError` on the first flag that makes no sense."""
    c = config
    _require(c.Distillation in DISTILLERS, "Distillation", c.Distillation,
             "unknown method; valid: " + ", ".join(DISTILLERS))
    _require(c.dataset in dataloader.DATASETS, "dataset", c.dataset,
             "unknown dataset; valid: " + ", ".join(dataloader.DATASETS))
    _require(c.model_name in nets.NETWORKS, "model_name", c.model_name,
             "unknown network; valid: " + ", ".join(nets.NETWORKS))
    _require(c.teacher_model_name in ("", *nets.NETWORKS), "teacher_model_name",
             c.teacher_model_name, "unknown network; valid: " + ", ".join(nets.NETWORKS))
    _require(c.main_scope in ("Student", "Teacher"), "main_scope", c.main_scope,
             "must be Student or Teacher")
    _require(c.schedule in SCHEDULES, "schedule", c.schedule, "valid: " + ", ".join(SCHEDULES))
    for flag in ("train_epoch", "batch_size", "val_batch_size", "transfer_size", "dkd_warmup",
                 "crd_feat_dim", "crd_nce_k", "reviewkd_warmup"):
        _require(getattr(c, flag) >= 1, flag, getattr(c, flag), "must be at least 1")
    for flag in ("train_subset", "test_subset", "dfkd_steps"):
        _require(getattr(c, flag) >= 0, flag, getattr(c, flag),
                 "must be 0 (all) or positive" if "subset" in flag else "must be >= 0")
    _require(c.init_epoch >= -1, "init_epoch", c.init_epoch,
             "must be -1 (the method's TF1 value) or >= 0")
    _require(0 <= c.kd_alpha <= 1, "kd_alpha", c.kd_alpha, "must be in [0, 1]")
    _require(0 <= c.crd_nce_m < 1, "crd_nce_m", c.crd_nce_m, "must be in [0, 1)")
    for flag in ("learning_rate", "width", "kd_temperature", "dfkd_sigma", "dfkd_tau",
                 "dfkd_learning_rate", "ls_base_temperature", "dkd_temperature", "dist_tau",
                 "crd_nce_t"):
        value = getattr(c, flag)
        _require(math.isfinite(value) and value > 0, flag, value, "must be a positive number")
    for flag in ("weight_decay", "dfkd_activation_weight", "ls_kd_weight", "dkd_alpha",
                 "dkd_beta", "dist_beta", "dist_gamma", "crd_weight", "reviewkd_weight",
                 "irg_w_vert", "irg_w_edge", "irg_w_tran"):
        value = getattr(c, flag)
        _require(math.isfinite(value) and value >= 0, flag, value, "must be >= 0")
    _require(0 <= c.seed < 2 ** 32, "seed", c.seed, "must be in [0, 2**32)")
    chosen = c.export_list()
    _require(all(e in EXPORTS for e in chosen), "exports", c.exports,
             "a comma-separated list of " + ", ".join(EXPORTS) + ", or empty")
    _require("tflite" not in chosen or "saved_model" in chosen, "exports", c.exports,
             "tflite is converted from the SavedModel: add saved_model")
    _require(c.verbose in (0, 1, 2), "verbose", c.verbose, "must be 0, 1 or 2")
    _require(c.strategy in STRATEGIES, "strategy", c.strategy,
             "valid: " + ", ".join(STRATEGIES))
    _require(c.precision in PRECISIONS, "precision", c.precision,
             "valid: " + ", ".join(PRECISIONS))
    _require(c.teacher_precision in ("",) + PRECISIONS, "teacher_precision",
             c.teacher_precision, "valid: " + ", ".join(PRECISIONS))
    _require(not (c.resume and c.overwrite), "resume", c.resume,
             "--resume and --overwrite exclude each other: pick one")
    _require(c.labels_per_class >= 0, "labels_per_class", c.labels_per_class,
             "must be 0 (every image labelled) or positive")
    _require(c.unlabeled in budget.UNLABELED, "unlabeled", c.unlabeled,
             "valid: " + ", ".join(budget.UNLABELED))
    method = DISTILLERS[c.Distillation]
    if takes_teacher(c.Distillation):
        _require(bool(c.teacher), "teacher", "", f"--Distillation={c.Distillation} needs a "
                 "trained teacher: pass --teacher=<run directory, .keras or .mat file>")
    else:
        _require(not c.teacher, "teacher", c.teacher,
                 f"--Distillation={c.Distillation} takes no teacher"
                 + (" (it trains its own)" if method.needs_teacher else "")
                 + ": drop the flag")
        _require(not c.teacher_precision, "teacher_precision", c.teacher_precision,
                 f"--Distillation={c.Distillation} has no frozen teacher"
                 + (" (it trains its own: use --precision)" if method.needs_teacher else "")
                 + ": drop the flag")
    _require(not c.teacher_model_name or method.needs_teacher, "teacher_model_name",
             c.teacher_model_name, f"--Distillation={c.Distillation} has no teacher: drop the "
             "flag (--model_name names the network a run trains)")
    _require(c.width == 1 or {c.model_name, c.teacher_model_name or c.model_name}
             <= set(nets.SCALABLE), "width", c.width, "only " + " and ".join(nets.SCALABLE)
             + " take a channel multiplier; the RepDistiller networks have their published "
             "widths: drop the flag")
    if method.data_free:
        _require(c.transfer_size >= c.batch_size, "transfer_size", c.transfer_size,
                 f"makes no full batch of --batch_size={c.batch_size}")
        _require(not c.labels_per_class, "labels_per_class", c.labels_per_class,
                 f"--Distillation={c.Distillation} reads no training image: drop the flag")
    _require(not (c.labels_per_class and c.strategy == "multi_worker"), "labels_per_class",
             c.labels_per_class, "not with --strategy=multi_worker (each worker would "
             "draw its own batches): use --strategy=default or mirrored")
