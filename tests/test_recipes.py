"""The reference schedule, the CIFAR-100 recipe files, the published numbers
and `scripts/report.py --published`."""

import dataclasses
import glob
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io as sio
import tensorflow as tf
from absl import flags

import nets
from tf_kd import optimizers, published_results, run_record, schedules
from tf_kd.config import Config, validate
from tf_kd.distillers import DISTILLERS
from tf_kd.errors import UserError
from test_dataloader import write_cifar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "recipes", "cifar100")
PAIR_FILES = sorted(glob.glob(os.path.join(RECIPES, "*.flags")))
METHOD_FILES = sorted(glob.glob(os.path.join(RECIPES, "methods", "*", "*.flags")))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


# -- the schedule --

def test_reference_schedule_at_its_milestones():
    # RepDistiller train_student.py: lr 0.05, x0.1 once the 1-based epoch exceeds 150, 180,
    # 210 of 240, i.e. from 0-based epochs 150, 180, 210
    expected = {0: 0.05, 149: 0.05, 150: 0.005, 179: 0.005, 180: 5e-4, 209: 5e-4, 210: 5e-5,
                239: 5e-5}
    for epoch, rate in expected.items():
        assert schedules.rate("reference", epoch, 0.05, 0, 240) == pytest.approx(rate)
    # after initialisation epochs, and scaled to a shorter run: 150 * 24 // 240 = 15, ...
    assert schedules.rate("reference", 30 + 149, 0.05, 30, 240) == 0.05
    assert schedules.rate("reference", 30 + 150, 0.05, 30, 240) == pytest.approx(0.005)
    assert schedules.milestones("reference", 24) == [15, 18, 21]
    assert schedules.milestones("reference", 100) == [62, 75, 87]


def test_tf1_schedule_unchanged():
    for train_epoch, init_epoch in [(100, 0), (100, 40), (7, 0), (3, 1)]:
        for epoch in range(init_epoch + train_epoch):
            assert (schedules.rate("tf1", epoch, 0.1, init_epoch, train_epoch)
                    == schedules.learning_rate(epoch, 0.1, init_epoch, train_epoch))
    assert schedules.milestones("tf1", 100) == [30, 60, 80]
    assert schedules.NESTEROV == {"tf1": True, "reference": False}
    assert Config().schedule == "tf1"


def test_reference_optimizer_is_pytorch_sgd_with_weight_decay():
    # torch.optim.SGD(lr, momentum=0.9, weight_decay=wd): g += wd * w; b = 0.9 b + g;
    # w -= lr * b. Here the decay is the loss term wd / 2 * sum(w ** 2).
    rng = np.random.RandomState(0)
    w0, grads, wd = rng.randn(4), [rng.randn(4) for _ in range(3)], 5e-4
    var = tf.Variable(w0)
    opt = optimizers.Momentum(0.05, use_nesterov=schedules.NESTEROV["reference"])
    w, buf = w0.copy(), np.zeros(4)
    for g in grads:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(var * g) + wd / 2 * tf.reduce_sum(var ** 2)
        opt.apply(tape.gradient(loss, [var]), [var])
        buf = 0.9 * buf + g + wd * w
        w = w - 0.05 * buf
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-6)


def test_schedule_is_validated_and_recorded():
    with pytest.raises(UserError, match=r"^--schedule=cosine: valid: tf1, reference\.$"):
        validate(Config(schedule="cosine"))
    assert Config(schedule="reference").settings()["schedule"] == "reference"


# -- the recipe files --

@pytest.fixture(scope="module")
def parse():
    """Parse `train.py` arguments with absl (flag files expanded) into a Config."""
    from tf_kd.cli import train
    if "schedule" not in flags.FLAGS:
        train.define_flags()

    def parse(*args):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["train.py", *args])
        values = {name: flags.FLAGS[name].value for name in Config.__dataclass_fields__}
        return Config(**{**values, "verbose": 2})
    yield parse
    flags.FLAGS.unparse_flags()


def teacher_for(method):
    return ["--teacher=t.keras"] if DISTILLERS[method].pretrained_teacher else []


def test_the_standard_pairs_have_recipes():
    pairs = {os.path.basename(p)[:-len(".flags")] for p in PAIR_FILES}
    assert pairs == {f"{t}_{s}" for t, s in published_results.PAIRS}
    assert len(pairs) == 13


@pytest.mark.parametrize("path", PAIR_FILES, ids=os.path.basename)
def test_pair_recipe(parse, path):
    config = parse(f"--flagfile={path}", "--Distillation=KD", "--teacher=t.keras")
    validate(config)
    pair = (config.teacher_model_name, config.model_name)
    assert os.path.basename(path) == f"{pair[0]}_{pair[1]}.flags"
    assert set(pair) <= set(nets.NETWORKS)
    reference = published_results.setting(config.model_name)
    assert {k: getattr(config, k) for k in reference} == reference
    # the student alone and the teacher, as each file's comment says
    validate(parse(f"--flagfile={path}", "--Distillation=None", "--teacher_model_name="))
    teacher = parse(f"--flagfile={path}", "--main_scope=Teacher",
                    f"--model_name={pair[0]}", "--teacher_model_name=")
    validate(teacher)
    assert teacher.schedule == "reference" and teacher.train_epoch == 240


@pytest.mark.parametrize("path", METHOD_FILES,
                         ids=lambda p: "/".join(p.split(os.sep)[-2:]))
def test_method_recipe(parse, path):
    pair_file = os.path.join(RECIPES, os.path.basename(path))
    alone = parse(f"--flagfile={path}")
    config = parse(f"--flagfile={pair_file}", f"--flagfile={path}",
                   *teacher_for(alone.Distillation))
    validate(config)
    label = os.path.basename(os.path.dirname(path))
    assert published_results.method_key(dataclasses.asdict(config)) == label.replace("_ls", "+LS")
    assert config.model_name == parse(f"--flagfile={pair_file}").model_name
    # it sets only the method's flags
    assert {k for k, v in dataclasses.asdict(alone).items() if v != getattr(Config(), k)} <= (
        {"Distillation", "verbose"} | set(DISTILLERS[alone.Distillation].flags))


def test_per_pair_hyperparameters(parse):
    def value(method, pair, flag):
        return getattr(parse(f"--flagfile={os.path.join(RECIPES, 'methods', method, pair)}"),
                       flag)
    # mdistiller configs/cifar100/dkd/*.yaml
    assert [value("DKD", p, "dkd_beta") for p in (
        "resnet32x4_resnet8x4.flags", "wrn_40_2_wrn_16_2.flags", "resnet56_resnet20.flags")] == [
        8, 6, 2]
    # ReviewKD CIFAR-100/script/reviewKD.sh
    assert value("ReviewKD", "resnet32x4_ShuffleV2.flags", "reviewkd_weight") == 8
    assert value("ReviewKD", "resnet56_resnet20.flags", "reviewkd_weight") == 0.6


def test_a_recipe_starts_train_py(tmp_path):
    # parsed and validated by the program itself, the data loaded (tiny files in CIFAR-100's
    # format): it gets as far as the teacher file
    write_cifar(tmp_path / "data", "cifar100", np.random.default_rng(0), train_per_file=64)
    recipe = os.path.join(RECIPES, "resnet32x4_resnet8x4.flags")
    result = subprocess.run(
        [sys.executable, "train.py", f"--flagfile={recipe}", "--Distillation=KD",
         "--teacher=missing_teacher.keras", f"--data_dir={tmp_path / 'data'}",
         f"--train_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "missing_teacher.keras" in result.stderr and "Traceback" not in result.stderr


# -- the published numbers --

def test_published_table():
    assert set(published_results.SOURCES) == {"RepDistiller", "mdistiller", "DIST_KD",
                                              "logit-standardization"}
    for (teacher, student), methods in published_results.PUBLISHED.items():
        assert {teacher, student} <= set(nets.NETWORKS)
        for method, (value, source) in methods.items():
            assert source in published_results.SOURCES and 50 < value < 80
            assert method.replace("+LS", "") in DISTILLERS
    assert set(published_results.ALONE) <= set(nets.NETWORKS)
    # a few entries read off the READMEs
    assert published_results.PUBLISHED[("resnet32x4", "resnet8x4")]["CRD"] == (75.51,
                                                                               "RepDistiller")
    assert published_results.PUBLISHED[("wrn_40_2", "wrn_40_1")].get("FSP") is None
    assert published_results.PUBLISHED[("resnet32x4", "ShuffleV2")]["DKD"] == (77.07,
                                                                               "mdistiller")
    assert published_results.lookup({"Distillation": "None", "model_name": "resnet8x4"}) == (
        72.50, "RepDistiller")


# -- report.py --published --

def fake_trial(directory, accuracies, **config):
    """A finished trial as train.py leaves it, for the report: run.json and log.mat."""
    os.makedirs(directory)
    config = {**Config().settings(), **config}
    sio.savemat(os.path.join(directory, "log.mat"),
                {"training_acc": np.array(accuracies), "validation_acc": np.array(accuracies)})
    run_record.write(directory, {
        "format": run_record.FORMAT, "state": run_record.FINISHED, "config": config,
        "architecture": {"model_name": config["model_name"], "main_scope": config["main_scope"],
                         "width": 1.0, "dataset": "cifar100", "num_classes": 100,
                         "image_shape": [32, 32, 3]},
        "epochs": len(accuracies), "epochs_done": len(accuracies), "history": {},
        "metrics": {"last_accuracy": accuracies[-1], "best_accuracy": max(accuracies)},
        "artefacts": ["log.mat"]})


def load_report():
    spec = importlib.util.spec_from_file_location("report", os.path.join(ROOT, "scripts",
                                                                         "report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECIPE = dict(dataset="cifar100", model_name="resnet8x4", teacher_model_name="resnet32x4",
              schedule="reference", train_epoch=240, batch_size=64, learning_rate=0.05)


def test_report_sets_trials_beside_the_published_numbers(tmp_path):
    root = tmp_path / "runs"
    fake_trial(root / "KD" / "trial0", [70.0, 73.0], Distillation="KD", teacher="t", **RECIPE)
    fake_trial(root / "KD" / "trial1", [71.0, 74.0], Distillation="KD", teacher="t", **RECIPE)
    fake_trial(root / "None" / "trial0", [72.0, 72.5],
               **{**RECIPE, "teacher_model_name": ""})
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, os.path.join("scripts", "report.py"),
                             f"--root={root}", f"--out={out}", "--published"],
                            capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (out / "report.md").read_text()
    assert "Warning" not in report
    kd = next(line for line in report.splitlines() if line.startswith("| KD |"))
    assert "| resnet32x4 -> resnet8x4 | 73.33 | 0.17 | 0.17 | RepDistiller |" in kd
    assert "| resnet8x4 alone | 72.50 |" in report
    assert "b84f547c5db6a35318d4671d7d5c4de74c822403" in report


def test_report_warns_off_the_published_setting(tmp_path):
    report = load_report()
    root = tmp_path / "runs"
    fake_trial(root / "DKD" / "trial0", [70.0], Distillation="DKD", teacher="t",
               **{**RECIPE, "train_epoch": 1, "schedule": "tf1"})
    fake_trial(root / "AT" / "trial0", [70.0], Distillation="AT", teacher="t", **RECIPE)
    fake_trial(root / "PKT" / "trial0", [70.0], Distillation="PKT", teacher="t",
               **{**RECIPE, "model_name": "resnet20"})
    found, warnings = report.published(str(root))
    assert found["DKD"] == ("resnet32x4 -> resnet8x4", (76.32, "mdistiller"))
    assert found["PKT"] == ("resnet32x4 -> resnet20", None)
    assert "2 trial(s) were not trained in the published setting" in warnings[0]
    assert "--schedule=tf1" in warnings[0] and "--train_epoch=1" in warnings[0]
    assert warnings[1].startswith("Warning: AT here follow(s) TF1's procedure")
    out = tmp_path / "report"
    report.main([f"--root={root}", f"--out={out}", "--published"])
    assert (out / "report.md").read_text().startswith(warnings[0])
    # trials of one method on two pairs are refused
    fake_trial(root / "DKD" / "trial1", [70.0], Distillation="DKD", teacher="t",
               **{**RECIPE, "model_name": "resnet20"})
    with pytest.raises(SystemExit, match="DKD: trials of resnet32x4 -> resnet8x4 and of"):
        report.published(str(root))
