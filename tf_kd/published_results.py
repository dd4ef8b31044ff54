"""Published CIFAR-100 top-1 accuracy (%) of the standard teacher -> student
pairs, as data: the numbers `scripts/report.py --published` sets a user's
trials beside. Each number names its source (`SOURCES`: a README at a
commit, and the paper its table comes from); none was reproduced here.

The publishers trained with the reference recipe (`--schedule=reference`,
240 epochs, batch 64, learning rate 0.05, 0.01 for MobileNetV2 and the
ShuffleNets, weight decay 5e-4, crop and flip: `recipes/cifar100/`), and
report one number per run, not a last / best pair.

ReviewKD has no entry: neither dvlab-research/ReviewKD's READMEs (commit
cede6ea6, `README.md`, `CIFAR-100/README.md`) nor mdistiller's README (commit
a08d46f1, nor any earlier version of it) publishes its CIFAR-100 numbers;
its paper (Chen et al., CVPR 2021) does. `report.py --published` shows a
ReviewKD trial's pair with an empty published column (and no warning: the
method here is its reference's)."""

SOURCES = {
    "RepDistiller": "HobbitLong/RepDistiller README.md, 'Benchmark Results on CIFAR-100' "
                    "(commit b84f547c5db6a35318d4671d7d5c4de74c822403); Tian et al., "
                    "ICLR 2020, Tables 1-2",
    "mdistiller": "megvii-research/mdistiller README.md, 'Decoupled Knowledge Distillation' "
                  "(commit a08d46f10d6102bd6e3f258ca5ac880b020ea259); Zhao et al., CVPR 2022, "
                  "Tables 1-2",
    "DIST_KD": "hunto/DIST_KD README.md, 'CIFAR-100', mean of its runs (commit "
               "2418f18b1fedd7c2646a7b1b9a27d5c674c2170b); Huang et al., NeurIPS 2022",
    "logit-standardization": "sunshangquan/logit-standardization-KD README.md, 'Results and "
                             "Logs' (commit f6e5aa5172bad618e801163c3385322eea673754); Sun "
                             "et al., CVPR 2024, Tables 1-2",
}

# The networks trained alone: RepDistiller's "Teacher / Student" rows.
ALONE = {"wrn_40_2": 75.61, "wrn_16_2": 73.26, "wrn_40_1": 71.98, "resnet56": 72.34,
         "resnet110": 74.31, "resnet20": 69.06, "resnet32": 71.14, "resnet32x4": 79.42,
         "resnet8x4": 72.50, "vgg13": 74.64, "vgg8": 70.36, "ResNet50": 79.34,
         "MobileNetV2": 64.60, "ShuffleV1": 70.50, "ShuffleV2": 71.82}

_REPDISTILLER_METHODS = ("KD", "FitNet", "AT", "SP", "CC", "VID", "RKD", "PKT", "AB", "FT",
                         "FSP", "NST", "CRD")
# RepDistiller's table, a column per pair, rows in _REPDISTILLER_METHODS'
# order (None: "N/A", FSP of WRN-40-2 -> WRN-40-1; its second table has no FSP).
_REPDISTILLER = {
    ("wrn_40_2", "wrn_16_2"): (74.92, 73.58, 74.08, 73.83, 73.56, 74.11, 73.35, 74.54, 72.50,
                               73.25, 72.91, 73.68, 75.48),
    ("wrn_40_2", "wrn_40_1"): (73.54, 72.24, 72.77, 72.43, 72.21, 73.30, 72.22, 73.45, 72.38,
                               71.59, None, 72.24, 74.14),
    ("resnet56", "resnet20"): (70.66, 69.21, 70.55, 69.67, 69.63, 70.38, 69.61, 70.34, 69.47,
                               69.84, 69.95, 69.60, 71.16),
    ("resnet110", "resnet20"): (70.67, 68.99, 70.22, 70.04, 69.48, 70.16, 69.25, 70.25, 69.53,
                                70.22, 70.11, 69.53, 71.46),
    ("resnet110", "resnet32"): (73.08, 71.06, 72.31, 72.69, 71.48, 72.61, 71.82, 72.61, 70.98,
                                72.37, 71.89, 71.96, 73.48),
    ("resnet32x4", "resnet8x4"): (73.33, 73.50, 73.44, 72.94, 72.97, 73.09, 71.90, 73.64,
                                  73.17, 72.86, 72.62, 73.30, 75.51),
    ("vgg13", "vgg8"): (72.98, 71.02, 71.43, 72.68, 70.71, 71.23, 71.48, 72.88, 70.94, 70.58,
                        70.23, 71.53, 73.94),
    ("vgg13", "MobileNetV2"): (67.37, 64.14, 59.40, 66.30, 64.86, 65.56, 64.52, 67.13, 66.06,
                               61.78, None, 58.16, 69.73),
    ("ResNet50", "MobileNetV2"): (67.35, 63.16, 58.58, 68.08, 65.43, 67.57, 64.43, 66.52,
                                  67.20, 60.99, None, 64.96, 69.11),
    ("ResNet50", "vgg8"): (73.81, 70.69, 71.84, 73.34, 70.25, 70.30, 71.50, 73.01, 70.65,
                           70.29, None, 71.28, 74.30),
    ("resnet32x4", "ShuffleV1"): (74.07, 73.59, 71.73, 73.48, 71.14, 73.38, 72.28, 74.10,
                                  73.55, 71.75, None, 74.12, 75.11),
    ("resnet32x4", "ShuffleV2"): (74.45, 73.54, 72.73, 74.56, 71.29, 73.40, 73.21, 74.69,
                                  74.31, 72.50, None, 74.68, 75.65),
    ("wrn_40_2", "ShuffleV1"): (74.83, 73.73, 73.32, 74.52, 71.38, 73.61, 72.21, 73.89, 73.34,
                                72.03, None, 74.89, 76.05),
}

# mdistiller's DKD rows (its README labels the last heterogeneous column
# "ResNet32x4 / MobileNet-V2", but its KD entry, 74.45, is RepDistiller's
# resnet32x4 -> ShuffleV2 and its config is configs/cifar100/dkd/res32x4_shuv2.yaml).
_DKD = {("resnet56", "resnet20"): 71.97, ("resnet110", "resnet32"): 74.11,
        ("resnet32x4", "resnet8x4"): 76.32, ("wrn_40_2", "wrn_16_2"): 76.23,
        ("wrn_40_2", "wrn_40_1"): 74.81, ("vgg13", "vgg8"): 74.68,
        ("resnet32x4", "ShuffleV1"): 76.45, ("wrn_40_2", "ShuffleV1"): 76.70,
        ("vgg13", "MobileNetV2"): 69.71, ("ResNet50", "MobileNetV2"): 70.35,
        ("resnet32x4", "ShuffleV2"): 77.07}

_DIST = {("wrn_40_2", "wrn_40_1"): 74.43, ("resnet56", "resnet20"): 71.75,
         ("resnet32x4", "resnet8x4"): 76.31, ("ResNet50", "MobileNetV2"): 68.66,
         ("resnet32x4", "ShuffleV1"): 76.34, ("resnet32x4", "ShuffleV2"): 77.35}

# "KD+Ours" and "DKD+Ours" (with --logit_standardization; per-pair settings in
# recipes/cifar100/methods/KD_ls and DKD_ls), the pairs of this module.
_LOGIT_STANDARDIZATION = {
    "KD+LS": {("resnet32x4", "resnet8x4"): 76.62, ("vgg13", "vgg8"): 74.36,
              ("wrn_40_2", "wrn_40_1"): 74.37, ("wrn_40_2", "wrn_16_2"): 76.11,
              ("resnet56", "resnet20"): 71.43, ("resnet110", "resnet32"): 74.17,
              ("resnet110", "resnet20"): 71.48, ("resnet32x4", "ShuffleV2"): 75.56,
              ("vgg13", "MobileNetV2"): 68.61, ("ResNet50", "MobileNetV2"): 69.02},
    "DKD+LS": {("resnet32x4", "resnet8x4"): 77.01, ("vgg13", "vgg8"): 74.81,
               ("wrn_40_2", "wrn_40_1"): 74.89, ("wrn_40_2", "wrn_16_2"): 76.39,
               ("resnet56", "resnet20"): 72.32, ("resnet110", "resnet32"): 74.29,
               ("resnet110", "resnet20"): 71.85, ("resnet32x4", "ShuffleV2"): 77.37,
               ("vgg13", "MobileNetV2"): 69.98, ("ResNet50", "MobileNetV2"): 70.45},
}


def _table():
    table = {}
    for pair, column in _REPDISTILLER.items():
        for method, value in zip(_REPDISTILLER_METHODS, column):
            if value is not None:
                table.setdefault(pair, {})[method] = (value, "RepDistiller")
    for method, values, source in [("DKD", _DKD, "mdistiller"), ("DIST", _DIST, "DIST_KD"),
                                   *[(m, v, "logit-standardization")
                                     for m, v in _LOGIT_STANDARDIZATION.items()]]:
        for pair, value in values.items():
            table[pair][method] = (value, source)
    return table


# (teacher, student): {method: (top-1 %, key of SOURCES)}; a method is a
# `--Distillation` key, "KD+LS" / "DKD+LS" with `--logit_standardization`.
PUBLISHED = _table()
PAIRS = tuple(PUBLISHED)

# The methods whose `--Distillation` key here follows its publisher's code
# (docs/methods.md); the others (FitNet, AT, AB, FT, FSP, VID, RKD, NST) are
# TF1's procedures, which RepDistiller's differ from.
PORTED = ("KD", "DKD", "DIST", "KD+LS", "DKD+LS", "PKT", "SP", "CC", "CRD", "ReviewKD")

# What every publisher trained with; `learning_rate` is 0.01 for SMALL students.
SETTING = {"dataset": "cifar100", "schedule": "reference", "train_epoch": 240, "batch_size": 64,
           "learning_rate": 0.05, "weight_decay": 5e-4, "width": 1.0, "train_subset": 0,
           "labels_per_class": 0}
SMALL = ("MobileNetV2", "ShuffleV1", "ShuffleV2")


def setting(student):
    """The published runs' settings for `student` (RepDistiller's
    `train_student.py`: lr 0.01 for MobileNetV2 and the ShuffleNets)."""
    return {**SETTING, "learning_rate": 0.01 if student in SMALL else SETTING["learning_rate"]}


def method_key(config):
    """The key of `PUBLISHED` a run's recorded `config` is a trial of:
    `Teacher` and `None` (a network alone), else its `--Distillation`, with
    "+LS" where KD or DKD standardised the logits."""
    if config.get("main_scope") == "Teacher":
        return "Teacher"
    method = config.get("Distillation", "None")
    if method in ("KD", "DKD") and config.get("logit_standardization"):
        return method + "+LS"
    return method


def lookup(config):
    """`(top-1, source key)` published for the run of recorded `config`, or
    None: a network alone from `ALONE`, else its pair's entry."""
    method = method_key(config)
    if method in ("Teacher", "None"):
        value = ALONE.get(config.get("model_name"))
        return None if value is None else (value, "RepDistiller")
    pair = (config.get("teacher_model_name") or config.get("model_name"), config.get("model_name"))
    return PUBLISHED.get(pair, {}).get(method)
