"""The reference schedule, the CIFAR-100 recipe files (each pair's run starts
from its file and takes a distillation step; one trains through `train.py`
with a converted teacher; `autotrain` gives a file's flags out by method),
the published numbers and `scripts/report.py --published`."""

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

import dataloader
import nets
from tf_kd import (optimizers, published_results, run_record, schedules, tf1_weights,
                   training)
from tf_kd.config import Config, validate
from tf_kd.distillers import DISTILLERS
from tf_kd.errors import UserError
from test_dataloader import write_cifar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "recipes", "cifar100")
PAIR_FILES = sorted(glob.glob(os.path.join(RECIPES, "*.flags")))
METHOD_FILES = sorted(glob.glob(os.path.join(RECIPES, "methods", "*", "*.flags")))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import autotrain  # noqa: E402
import convert_teacher  # noqa: E402


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


def comment_flags(path, what):
    """The flags that a recipe's comment line `# <what>: add ...` says to add."""
    with open(path) as f:
        line = next(line for line in f if line.startswith(f"# {what}: add "))
    return line.split(": add ", 1)[1].split()


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
    # the student alone and the teacher, with the flags each file's comments add: the
    # teacher in the setting of RepDistiller's train_teacher.py (lr 0.05 for every teacher)
    alone = parse(f"--flagfile={path}", *comment_flags(path, "The student alone"))
    validate(alone)
    assert (alone.Distillation, alone.teacher_model_name, alone.model_name) == ("None", "",
                                                                                pair[1])
    teacher = parse(f"--flagfile={path}", *comment_flags(path, "The teacher"))
    validate(teacher)
    assert (teacher.main_scope, teacher.model_name, teacher.teacher_model_name) == (
        "Teacher", pair[0], "")
    reference = published_results.setting(pair[0])
    assert {k: getattr(teacher, k) for k in reference} == reference


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


# -- a run of each pair, from its recipe file --

@pytest.fixture(scope="module")
def tiny_cifar100(tmp_path_factory):
    """CIFAR-100's python archive, extracted, with 4 training and 2 test images (and the
    teachers' files)."""
    root = tmp_path_factory.mktemp("cifar100")
    write_cifar(root, "cifar100", np.random.default_rng(0), train_per_file=4, test_count=2)
    return str(root)


@pytest.fixture(scope="module")
def built():
    return {}


@pytest.fixture
def built_once(built, monkeypatch):
    """Each network built, and each `.keras` file read, once for the whole module: the
    pairs share teachers and students, and building a network is most of a pair's cost."""
    build_network, load_keras = training.build_network, tf1_weights.load_keras

    def build_network_once(config, data, scope, width=None, model_name=None, precision=None):
        key = (model_name or config.model_name, scope, precision or config.precision,
               config.weight_decay)
        if key not in built:
            built[key] = build_network(config, data, scope, width, model_name, precision)
        return built[key]

    def load_keras_once(path):
        if path not in built:
            built[path] = load_keras(path)
        return built[path]
    monkeypatch.setattr(training, "build_network", build_network_once)
    monkeypatch.setattr(tf1_weights, "load_keras", load_keras_once)


def method_recipe(pair):
    """The method a step on `pair` takes: its ReviewKD recipe where there is one (it reads
    every stage of both networks), else its first method recipe, else KD."""
    for method in ("ReviewKD", "DKD", "DKD_ls", "KD_ls"):
        path = os.path.join(RECIPES, "methods", method, f"{pair}.flags")
        if os.path.exists(path):
            return [f"--flagfile={path}"]
    return ["--Distillation=KD"]


@pytest.mark.parametrize("path", PAIR_FILES, ids=os.path.basename)
def test_each_pair_starts_from_its_recipe_and_takes_a_step(
        parse, path, tiny_cifar100, built, built_once):
    """train.py's path up to its first step: the recipe file (and a method's) parsed by
    train.py's flags, the data read from CIFAR-100's files, a teacher file of the pair's
    teacher network taken by --teacher, the distiller built, one step with the run's
    optimizer on a batch of the run's pipeline (batch 2 instead of 64)."""
    pair = os.path.basename(path)[:-len(".flags")]
    teacher_name = parse(f"--flagfile={path}").teacher_model_name
    teacher_file = os.path.join(tiny_cifar100, f"{teacher_name}.keras")
    config = parse(f"--flagfile={path}", *method_recipe(pair), f"--teacher={teacher_file}",
                   f"--data_dir={tiny_cifar100}", "--batch_size=2")
    validate(config)
    assert f"{config.teacher_model_name}_{config.model_name}" == pair
    data, _ = training.load_data(config)
    assert (data.num_classes, len(data.train_labels)) == (100, 4)
    key = ("saved", teacher_name)
    if key not in built:      # the pair's teacher network, as a .keras file
        network = training.build_network(config, data, "Teacher", model_name=teacher_name)
        network.save(teacher_file)
        built[key] = [w.numpy() for w in network.weights]
    saved = built[key]
    teacher = training.build_network(config, data, "Teacher", model_name=teacher_name)
    for weight in teacher.weights:      # so that only --teacher's file can restore them
        weight.assign(np.zeros(weight.shape, weight.dtype))

    distiller = training.build_distiller(config, data)
    assert distiller.teacher is teacher
    assert distiller.student is training.build_network(config, data, "Student")
    assert all(np.array_equal(w.numpy(), s) for w, s in zip(teacher.weights, saved))
    distiller.compile(optimizer=optimizers.Momentum(
        config.learning_rate, use_nesterov=schedules.NESTEROV[config.schedule]),
        run_eagerly=True)     # one step costs less eagerly than compiled
    distiller.on_epoch_begin(max(config.dkd_warmup, config.reviewkd_warmup))  # warmed up
    if "batch" not in built:      # the same for every pair: 2 images, seed 0
        built["batch"] = next(iter(dataloader.train_pipeline(data, config.batch_size,
                                                             seed=config.seed)))
    batch = built["batch"]
    trained = distiller.trainable_variables
    before = [v.numpy().copy() for v in trained]
    logs = distiller.train_on_batch(*batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["distillation_loss"] > 0
    assert all(not np.array_equal(v.numpy(), b) for v, b in zip(trained, before))
    assert all(np.array_equal(w.numpy(), s) for w, s in zip(teacher.weights, saved))


@pytest.mark.parametrize("method, flags", [
    ("DIST", []), ("PKT", []), ("SP", []), ("CC", []), ("CRD", ["--crd_nce_k=2"]), ("IRG", []),
])
def test_each_other_method_takes_a_step_on_cifar100_files(
        parse, method, flags, tiny_cifar100, built, built_once):
    """The methods since TF1 that no recipe names (KD, DKD and ReviewKD: above) take a
    step on resnet56 -> resnet20's recipe, CIFAR-100's files read by the real loader;
    CRD's batch carries the images' indices (2 negatives: the set has 4 images)."""
    teacher_file = os.path.join(tiny_cifar100, "resnet56.keras")
    config = parse(f"--flagfile={os.path.join(RECIPES, 'resnet56_resnet20.flags')}",
                   f"--Distillation={method}", *flags, f"--teacher={teacher_file}",
                   f"--data_dir={tiny_cifar100}", "--batch_size=2")
    validate(config)
    data, _ = training.load_data(config)
    if not os.path.exists(teacher_file):
        training.build_network(config, data, "Teacher", model_name="resnet56").save(
            teacher_file)
    distiller = training.build_distiller(config, data)
    distiller.compile(optimizer=optimizers.Momentum(config.learning_rate), run_eagerly=True)
    batch = next(iter(dataloader.train_pipeline(data, config.batch_size, seed=config.seed,
                                                indices=type(distiller).example_indices)))
    trained = distiller.trainable_variables
    before = [v.numpy().copy() for v in trained]
    logs = distiller.train_on_batch(*batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["distillation_loss"] > 0
    assert all(not np.array_equal(v.numpy(), b) for v, b in zip(trained, before))


def test_a_pair_trains_through_train_py_with_a_converted_teacher(tmp_path, tiny_cifar100):
    """scripts/convert_teacher.py's file of the reference's resnet8 (the fixture written
    with torch) is the teacher of a whole run of train.py from resnet56 -> resnet20's
    recipe, on CIFAR-100's files: one epoch, its record and its exports."""
    with np.load(os.path.join(ROOT, "tests", "data", "resnet8_reference.npz")) as arrays:
        state = {k.split("/", 1)[1]: arrays[k] for k in arrays.files
                 if k.startswith("state_dict/")}
    np.savez(tmp_path / "resnet8.npz", **state)
    converted = str(tmp_path / "resnet8.keras")
    convert_teacher.main(["--model_name=resnet8", f"--checkpoint={tmp_path / 'resnet8.npz'}",
                          f"--output={converted}"])
    recipe = os.path.join(RECIPES, "resnet56_resnet20.flags")
    result = subprocess.run(
        [sys.executable, "train.py", f"--flagfile={recipe}", "--Distillation=KD",
         f"--teacher={converted}", "--teacher_model_name=resnet8",
         f"--data_dir={tiny_cifar100}", f"--train_dir={tmp_path / 'run'}", "--train_epoch=1",
         "--batch_size=2", "--verbose=2"],
        capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Teacher params assigned" in result.stdout
    assert "Final validation accuracy" in result.stdout
    record = run_record.read(str(tmp_path / "run"))
    assert record["state"] == run_record.FINISHED
    assert {k: record["config"][k] for k in ("dataset", "model_name", "teacher_model_name",
                                             "Distillation", "schedule", "learning_rate",
                                             "weight_decay", "teacher")} == {
        "dataset": "cifar100", "model_name": "resnet20", "teacher_model_name": "resnet8",
        "Distillation": "KD", "schedule": "reference", "learning_rate": 0.05,
        "weight_decay": 5e-4, "teacher": converted}
    assert record["architecture"]["num_classes"] == 100 and record["epochs"] == 1
    assert {"model.keras", "saved_model", "model.tflite"} <= set(record["artefacts"])


# -- autotrain with a recipe file --

def test_autotrain_gives_a_recipe_files_flags_out_by_method(parse, tmp_path, monkeypatch):
    """`--flagfile=` of a pair and of a method's recipe after `--`: each train.py
    command takes only its method's flags, and train.py's flags validate it."""
    commands = []
    monkeypatch.setattr(autotrain, "run", lambda command: commands.append(command) or 0)
    monkeypatch.setattr(autotrain, "pass_signals_on", lambda: None)
    pair = os.path.join(RECIPES, "resnet56_resnet20.flags")
    dkd = os.path.join(RECIPES, "methods", "DKD", "resnet56_resnet20.flags")
    autotrain.main(["--methods=None,KD,DKD,Teacher", "--trials=1", f"--root={tmp_path}", "--",
                    f"--flagfile={pair}", f"--flagfile={dkd}"])
    configs = {}
    for command in commands:
        assert not any(a.startswith("--flagfile") for a in command)
        config = parse(*command[2:])
        validate(config)
        configs[os.path.basename(os.path.dirname(config.train_dir))] = config
    assert list(configs) == ["Teacher", "None", "KD", "DKD"]
    for method, config in configs.items():
        assert (config.dataset, config.schedule, config.train_epoch, config.batch_size,
                config.weight_decay, config.learning_rate) == ("cifar100", "reference", 240,
                                                               64, 5e-4, 0.05)
        assert config.Distillation == ("None" if method == "Teacher" else method)
        assert config.dkd_beta == (2 if method == "DKD" else Config().dkd_beta)
    assert (configs["Teacher"].main_scope, configs["Teacher"].model_name,
            configs["Teacher"].teacher_model_name) == ("Teacher", "resnet56", "")
    assert (configs["None"].model_name, configs["None"].teacher_model_name,
            configs["None"].teacher) == ("resnet20", "", "")
    for method in ("KD", "DKD"):
        assert (configs[method].model_name, configs[method].teacher_model_name,
                configs[method].teacher) == ("resnet20", "resnet56",
                                             str(tmp_path / "Teacher" / "trial0"))

    def refused(*extra):
        with pytest.raises(SystemExit) as error:
            autotrain.main(["--methods=None,DKD", "--trials=1", f"--root={tmp_path}", "--",
                            *extra])
        assert "\n" not in str(error.value)
        return str(error.value)
    assert "Unable to open flagfile" in refused("--flagfile=missing.flags")
    kd_ls = os.path.join(RECIPES, "methods", "KD_ls", "resnet56_resnet20.flags")
    assert refused(f"--flagfile={kd_ls}").startswith(
        "autotrain: --Distillation=KD (after --): each trial's method comes from --methods")


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
    # ReviewKD: ported, but no README of the references publishes its CIFAR-100 numbers
    assert "ReviewKD" in published_results.PORTED
    assert not any("ReviewKD" in methods for methods in published_results.PUBLISHED.values())


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


def test_report_sets_a_reviewkd_trial_beside_its_pair_without_a_warning(tmp_path):
    report = load_report()
    root = tmp_path / "runs"
    fake_trial(root / "ReviewKD" / "trial0", [70.0], Distillation="ReviewKD", teacher="t",
               reviewkd_weight=5.0, **RECIPE)
    assert report.published(str(root)) == ({"ReviewKD": ("resnet32x4 -> resnet8x4", None)}, [])
