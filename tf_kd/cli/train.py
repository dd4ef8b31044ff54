"""Train a network, with or without distillation (TF1 `train_w_distill.py`).

    python train.py --Distillation=None --dataset=fashion_mnist --train_dir=runs/student
"""

import sys
import time

from absl import flags

from tf_kd import cli

F = flags.FLAGS


def define_flags():
    """Define the flags on absl's `FLAGS`, as the program starts (`cli.run`):
    what they list imports TensorFlow."""
    import nets
    from tf_kd.config import PRECISIONS
    from tf_kd.distillers import DISTILLERS
    from tf_kd.distribution import STRATEGIES
    from tf_kd.schedules import SCHEDULES
    from tf_kd.transfer_set import Synthesis

    flags.DEFINE_string("train_dir", "",
                        "Directory for the run's record, logs, state and exports "
                        "(default: runs/<Distillation>, runs/Teacher for a teacher).")
    flags.DEFINE_string("Distillation", "None",
                        "Distillation method: " + ", ".join(DISTILLERS) + ".")
    flags.DEFINE_string("dataset", "cifar100",
                        "Dataset: cifar100, cifar10, fashion_mnist, fashion_mnist_seg "
                        "(segmentation) or synthetic.")
    flags.DEFINE_string("model_name", "ResNet",
                        "Network architecture: ResNet, FCN for segmentation, or a CIFAR-100 "
                        "network of RepDistiller: " + ", ".join(n for n in nets.NETWORKS if n not in ("ResNet", "FCN")) + ".")
    flags.DEFINE_string("teacher_model_name", "",
                        "The teacher's network (a name of --model_name) where a method has a "
                        "teacher; default: --model_name's.")
    flags.DEFINE_enum("main_scope", "Student", ["Student", "Teacher"],
                      "Which network to train: Student (ResNet8) or Teacher (ResNet32); for "
                      "the RepDistiller networks only the model's name.")
    flags.DEFINE_integer("train_epoch", 100, "Epochs after the initialisation phase.")
    flags.DEFINE_integer("init_epoch", -1,
                         "Initialisation epochs; -1 takes the method's TF1 value "
                         "(40 for FitNet, FSP, FT, AB and MHGD, 1 for KA, else 0).")
    flags.DEFINE_integer("batch_size", 128, "Training batch size.")
    flags.DEFINE_integer("val_batch_size", 200, "Evaluation batch size.")
    flags.DEFINE_float("learning_rate", 0.1,
                       "Initial learning rate, x0.1 at the epochs of --schedule.")
    flags.DEFINE_enum("schedule", "tf1", list(SCHEDULES),
                      "tf1: x0.1 at 30%, 60% and 80% of train_epoch, Nesterov momentum 0.9 "
                      "(TF1). reference: x0.1 after epochs 150, 180 and 210 of 240 (scaled "
                      "to train_epoch), plain momentum 0.9 (RepDistiller, mdistiller).")
    flags.DEFINE_float("weight_decay", 5e-4,
                       "TF1 l2_regularizer scale (loss = scale * sum(w**2) / 2).")
    flags.DEFINE_integer("seed", 0, "Random seed (initialisation, shuffling, augmentation).")
    flags.DEFINE_string("teacher", "",
                        "Trained teacher: a run directory or a .keras file written by "
                        "train.py --main_scope=Teacher, or a TF1 .mat file.")
    flags.DEFINE_float("width", 1.0, "Channel multiplier of both networks (1.0 = TF1).")
    flags.DEFINE_integer("train_subset", 0, "Use only the first N training images (0: all).")
    flags.DEFINE_integer("test_subset", 0, "Use only the first N test images (0: all).")
    flags.DEFINE_string("data_dir", "",
                        "Where the dataset files are (default: standard places).")
    flags.DEFINE_float("kd_alpha", 0.7,
                       "Soft_logits: weight of the cross-entropy; the KL's is 1 - kd_alpha.")
    flags.DEFINE_float("kd_temperature", 4.0, "Soft_logits and KD: the softmax temperature T.")
    flags.DEFINE_boolean("kd_t_squared", False,
                         "Soft_logits: multiply the KL by T^2, as Hinton et al. (not TF1).")
    flags.DEFINE_boolean("logit_standardization", False,
                         "KD, DKD: standardise the logits (Sun et al., CVPR 2024); the "
                         "temperature becomes --ls_base_temperature, the weight --ls_kd_weight.")
    flags.DEFINE_float("ls_base_temperature", 2.0,
                       "KD, DKD with --logit_standardization: the temperature.")
    flags.DEFINE_float("ls_kd_weight", 9.0,
                       "KD, DKD with --logit_standardization: KD's KL weight, DKD's factor "
                       "on alpha and beta.")
    flags.DEFINE_float("dkd_alpha", 1.0, "DKD: weight of the target-class term TCKD.")
    flags.DEFINE_float("dkd_beta", 8.0, "DKD: weight of the non-target-class term NCKD.")
    flags.DEFINE_float("dkd_temperature", 4.0, "DKD: the softmax temperature T.")
    flags.DEFINE_integer("dkd_warmup", 20,
                         "DKD: epochs of the linear warm-up min(epoch / warmup, 1) of its term.")
    flags.DEFINE_float("dist_beta", 1.0, "DIST: weight of the inter-class relation.")
    flags.DEFINE_float("dist_gamma", 1.0, "DIST: weight of the intra-class relation.")
    flags.DEFINE_float("dist_tau", 4.0, "DIST: the softmax temperature tau.")
    flags.DEFINE_float("crd_weight", 0.8,
                       "CRD: weight of its contrastive loss (RepDistiller's -b).")
    flags.DEFINE_integer("crd_feat_dim", 128, "CRD: width of the embeddings and memory banks.")
    flags.DEFINE_integer("crd_nce_k", 16384, "CRD: negatives (other-class images) per image.")
    flags.DEFINE_float("crd_nce_t", 0.07, "CRD: the temperature of its scores.")
    flags.DEFINE_float("crd_nce_m", 0.5, "CRD: the momentum of its memory banks' update.")
    flags.DEFINE_float("reviewkd_weight", 1.0,
                       "ReviewKD: weight of its hierarchical context loss (the published runs: "
                       "5 for resnet32x4->resnet8x4 and WRN-40-2->WRN-16-2, 0.6 for "
                       "resnet56->resnet20).")
    flags.DEFINE_integer("reviewkd_warmup", 20,
                         "ReviewKD: epochs of the linear warm-up min(epoch / warmup, 1) of its "
                         "term, epochs from 0.")
    flags.DEFINE_float("irg_w_vert", 0.1, "IRG: weight of its vertex term (logits' MSE).")
    flags.DEFINE_float("irg_w_edge", 5.0,
                       "IRG: weight of its edge term (distances between the batch's examples).")
    flags.DEFINE_float("irg_w_tran", 5.0,
                       "IRG: weight of its transformation term (between the last two stages).")
    flags.DEFINE_enum("nst_kernel", "poly", ["linear", "poly", "gaussian"],
                      "NST's MMD kernel (loss weight 50, 50, 16 as in the paper).")
    flags.DEFINE_boolean("nst_with_kd", False, "NST: add the Soft_logits term (KD+NST).")
    flags.DEFINE_string("transfer_set", "",
                        "DFKD: .npz transfer set, loaded if it exists, else built and saved "
                        "there (default: train_dir/transfer_set.npz).")
    flags.DEFINE_integer("transfer_size", 10000, "DFKD: number of pseudo samples to build.")
    flags.DEFINE_boolean("dfkd_noise_baseline", False,
                         "DFKD: build the baseline transfer set instead, random noise "
                         "labelled by the teacher (no synthesis).")
    flags.DEFINE_float("dfkd_sigma", Synthesis.sigma,
                       "DFKD: standard deviation of the sampled logits.")
    flags.DEFINE_float("dfkd_tau", Synthesis.tau,
                       "DFKD: temperature of the soft targets and of the student's loss.")
    flags.DEFINE_integer("dfkd_steps", Synthesis.steps,
                         "DFKD: Adam steps per batch of pseudo samples.")
    flags.DEFINE_float("dfkd_learning_rate", Synthesis.learning_rate,
                       "DFKD: Adam's step size on the (normalised) inputs.")
    flags.DEFINE_float("dfkd_activation_weight", Synthesis.activation_weight,
                       "DFKD: weight of the first-layer activation loss L_a.")
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES),
                      "tf.distribute strategy: default (one device), mirrored (the local "
                      "GPUs), multi_worker (the machines of TF_CONFIG). --batch_size is global.")
    flags.DEFINE_enum("precision", "float32", list(PRECISIONS),
                      "Keras dtype policy of the networks; the losses, decompositions and "
                      "named outputs stay float32 (mixed_float16 adds loss scaling).")
    flags.DEFINE_string("teacher_precision", "",
                        "Keras dtype policy of the frozen --teacher alone (e.g. mixed_bfloat16: "
                        "its forward pass computes in bfloat16, which changes its outputs at "
                        "bfloat16's precision); default: --precision's.")
    flags.DEFINE_boolean("jit_compile", False, "Compile the training step with XLA.")
    flags.DEFINE_integer("labels_per_class", 0,
                         "Labelled-data budget: N training images of each class keep their "
                         "labels, drawn by --seed (0: all, as TF1).")
    flags.DEFINE_enum("unlabeled", "rest", ["rest", "none"],
                      "Under --labels_per_class: 'rest' gives a distilling method the other "
                      "training images without labels (its distillation term reads them), "
                      "'none' leaves them out.")
    flags.DEFINE_string("exports", "saved_model,tflite",
                        "The deployment exports written beside model.keras and "
                        "train_params.mat (always written: --teacher and test.py read them), "
                        "comma-separated: saved_model, tflite (converted from the SavedModel); "
                        "--exports= for none.")
    flags.DEFINE_boolean("export_features", False,
                         "The SavedModel and model.tflite serve every named output, not "
                         "logits alone.")
    flags.DEFINE_boolean("resume", False,
                         "Continue the interrupted or failed run in train_dir from its last "
                         "finished epoch (with the same flags).")
    flags.DEFINE_boolean("overwrite", False,
                         "Replace the run in train_dir (only ever a run of this project).")
    flags.DEFINE_integer("verbose", None,
                         "Keras verbosity: 0 silent, 1 progress bar with ETA, 2 one line per "
                         "epoch (default: 1 on a terminal, else 2).")


def _train(argv):
    from tf_kd import distribution, training    # TensorFlow: loaded as the program starts
    from tf_kd.config import Config

    values = {name: F[name].value for name in Config.__dataclass_fields__}
    if values["verbose"] is None:
        values["verbose"] = 1 if sys.stdout.isatty() else 2
    started = time.time()
    with distribution.workers_watched(values["strategy"]):
        result = training.train(Config(**values))
    metrics = result.record["metrics"]
    print(f"Final validation accuracy: {metrics['last_accuracy']:.2f}% "
          f"(best {metrics['best_accuracy']:.2f}%)")
    if "last_miou" in metrics:
        print(f"Final validation mIoU: {metrics['last_miou']:.2f}%")
    minutes, seconds = divmod(round(time.time() - started), 60)
    print(f"{result.record['epochs']} epochs in {minutes} min {seconds:02d} s; the run "
          f"and its exports ({', '.join(result.record['artefacts'])}) are in "
          f"{result.train_dir}")


def run():
    """The `tf-kd-train` command."""
    cli.run(_train, define_flags, __name__, __doc__)
