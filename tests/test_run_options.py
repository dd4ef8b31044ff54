"""Run options beyond TF1: the labelled-data budget through `train.py`, the
record of the input and of how the run executed, the exports a deployment
reads, the start-up note of a decayed learning rate, and `autotrain`
passing each method only its own flags."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import dataloader
from dataloader import budget
from tf_kd import run_record, training
from tf_kd.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION = dict(dataset="fashion_mnist", train_epoch=1, batch_size=32, val_batch_size=100,
               width=0.125, train_subset=512, test_subset=100, verbose=0)


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory):
    """DML (it distils from a teacher it trains) with 5 labels per class."""
    train_dir = tmp_path_factory.mktemp("budget") / "run"
    result = training.train(training.Config(train_dir=str(train_dir), Distillation="DML",
                                            labels_per_class=5, **FASHION))
    return train_dir, result


def test_a_budget_run_records_what_it_drew(budget_run):
    train_dir, result = budget_run
    record = run_record.read(str(train_dir))
    labels = dataloader.load("fashion_mnist", train_subset=512).train_labels
    drawn = budget.draw(labels, 5, 10, seed=0)
    assert record["labels"] == {"labels_per_class": 5, "labelled": 50, "unlabeled": 462,
                                "indices_sha256": budget.fingerprint(drawn)}
    assert record["config"]["labels_per_class"] == 5 and record["config"]["unlabeled"] == "rest"
    assert len(result.history["accuracy"]) == 1 and np.isfinite(result.history["loss"][0])


def test_the_record_says_what_the_network_reads_and_how_the_run_executed(budget_run):
    train_dir, _ = budget_run
    record = run_record.read(str(train_dir))
    data = dataloader.load("fashion_mnist", train_subset=1)
    assert record["input"]["layout"] == "NHWC" and record["input"]["image_shape"] == [32, 32, 1]
    assert "padded by 2 pixels" in record["input"]["prepared"]
    np.testing.assert_allclose(record["input"]["mean"], data.mean)
    np.testing.assert_allclose(record["input"]["std"], data.std)
    assert record["execution"] == {"strategy": "default", "jit_compile": False}


def test_deployment_exports_serve_logits_alone(budget_run):
    from ai_edge_litert.interpreter import Interpreter
    train_dir, _ = budget_run
    images = np.zeros([2, 32, 32, 1], np.float32)
    saved = tf.saved_model.load(str(train_dir / "saved_model"))
    assert list(saved.serve(images)) == ["logits"]
    lite = Interpreter(str(train_dir / "model.tflite")).get_signature_runner()
    assert list(lite(image=images)) == ["logits"]
    import keras
    assert "feat2" in keras.models.load_model(train_dir / "model.keras").output


@pytest.mark.parametrize("overrides, says", [
    (dict(labels_per_class=60), "--labels_per_class=60: class 0 has only"),
    (dict(labels_per_class=-1), "--labels_per_class=-1: must be 0"),
    (dict(unlabeled="some"), "--unlabeled=some: valid: rest, none"),
    (dict(labels_per_class=5, Distillation="DFKD", teacher="t.keras"),
     "--labels_per_class=5: --Distillation=DFKD reads no training image"),
    (dict(labels_per_class=5, strategy="multi_worker"), "not with --strategy=multi_worker"),
])
def test_bad_budgets_are_refused_before_anything_is_written(tmp_path, overrides, says):
    train_dir = tmp_path / "run"
    config = training.Config(train_dir=str(train_dir), **{**FASHION, **overrides})
    with pytest.raises(UserError, match=says):
        training.train(config)
    assert not train_dir.exists()


@pytest.fixture(scope="module")
def untrained_teacher(tmp_path_factory):
    """A teacher network of the synthetic set, saved as a .keras file outside any run."""
    import nets
    data = dataloader.load("synthetic", train_subset=64, test_subset=10)
    teacher = nets.ResNet(data.image_shape, data.num_classes, "Teacher", width=0.125)
    path = tmp_path_factory.mktemp("teacher") / "teacher.keras"
    teacher.save(path)
    return path


@pytest.mark.parametrize("method, flags, attributes", [
    ("Soft_logits", dict(kd_alpha=0.5, kd_temperature=2.0, kd_t_squared=True),
     dict(alpha=0.5, temperature=2.0, t_squared=True)),
    ("NST", dict(nst_kernel="linear", nst_with_kd=True), dict(kernel="linear", with_kd=True)),
    ("KD", dict(kd_temperature=3.0), dict(temperature=3.0, kd_weight=0.9, ce_weight=0.1)),
    ("KD", dict(logit_standardization=True, ls_base_temperature=3.0, ls_kd_weight=5.0),
     dict(temperature=3.0, kd_weight=5.0, logit_standardization=True)),
    ("DKD", dict(dkd_alpha=2.0, dkd_beta=6.0, dkd_temperature=3.0, dkd_warmup=5),
     dict(alpha=2.0, beta=6.0, temperature=3.0, warmup=5, logit_standardization=False)),
    ("DKD", dict(logit_standardization=True), dict(alpha=9.0, beta=72.0, temperature=2.0)),
    ("DIST", dict(dist_beta=2.0, dist_gamma=0.5, dist_tau=1.0),
     dict(beta=2.0, gamma=0.5, tau=1.0, weight=2.0)),
    ("CRD", dict(crd_weight=0.5, crd_nce_k=8, crd_feat_dim=16),
     dict(weight=0.5, nce_k=8)),
    ("ReviewKD", dict(reviewkd_weight=5.0, reviewkd_warmup=3), dict(weight=5.0, warmup=3)),
    ("IRG", dict(irg_w_vert=1.0, irg_w_edge=2.0, irg_w_tran=3.0),
     dict(loss_weights=(1.0, 2.0, 3.0))),
])
def test_a_methods_own_flags_reach_it(untrained_teacher, method, flags, attributes):
    data = dataloader.load("synthetic", train_subset=64, test_subset=10)
    config = training.Config(Distillation=method, dataset="synthetic", width=0.125,
                             teacher=str(untrained_teacher), **flags)
    distiller = training.build_distiller(config, data)
    assert {k: getattr(distiller, k) for k in attributes} == attributes
    if method == "CRD":          # a memory entry per training image of the run
        assert distiller.contrast.memory_s.shape == (64, 16)


def test_a_short_schedule_says_it_starts_decayed():
    config = training.Config(train_epoch=3, learning_rate=0.1)
    note = training.schedule_note(config, init_epoch=0)
    assert "starts training at learning rate 0.01" in note
    assert training.schedule_note(training.Config(train_epoch=4), init_epoch=2) is None


def test_autotrain_passes_each_method_its_own_flags(tmp_path):
    """`--nst_kernel` goes to NST only; `--train_epoch=0` makes each
    `train.py` refuse at once, so only the command lines are looked at."""
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "autotrain.py"), "--methods=None,NST",
         "--trials=1", f"--root={tmp_path}", "--", "--nst_kernel=linear", "--train_epoch=0",
         "--dataset=synthetic"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    commands = [line for line in result.stdout.splitlines() if "train.py" in line]
    assert len(commands) == 2, result.stdout + result.stderr
    assert "--nst_kernel" not in commands[0] and "--Distillation=None" in commands[0]
    assert "--nst_kernel=linear" in commands[1] and "--Distillation=NST" in commands[1]
    assert "--train_epoch=0: must be at least 1" in result.stderr
