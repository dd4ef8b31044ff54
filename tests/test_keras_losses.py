"""`tf_kd.keras_losses` with Keras' own `keras.distillation.Distiller`, on
small functional conv nets (not `nets.ResNet`): each loss gives the value of
its `tf_kd.losses` function on the features read independently from the
models, a distiller trains with it, and losses and distillers serialise."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_kd import keras_losses as kl
from tf_kd.losses import multiple, relation, response, selectivity, shared

CLASSES = 5


def conv_net(prefix, widths, blocks):
    """8x8x3 input; per stage `blocks` 3x3 convolutions (the first of each
    stage after the first with stride 2), the stage's last one named
    `{prefix}_stage{i}`; global pooling `{prefix}_pool`; logits."""
    inputs = keras.Input((8, 8, 3), name=f"{prefix}_input")
    x = inputs
    for i, width in enumerate(widths):
        for j in range(blocks):
            name = f"{prefix}_stage{i}" if j == blocks - 1 else f"{prefix}_stage{i}_{j}"
            x = keras.layers.Conv2D(width, 3, strides=2 if i > 0 and j == 0 else 1,
                                    padding="same", activation="relu", name=name)(x)
    pooled = keras.layers.GlobalAveragePooling2D(name=f"{prefix}_pool")(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name=f"{prefix}_logits")(pooled),
                       name=prefix)


@pytest.fixture(scope="module")
def nets():
    keras.utils.set_random_seed(1)
    return {"teacher": conv_net("t", (8, 16), 2),
            "same": conv_net("s", (8, 16), 1),      # the teacher's widths, fewer layers
            "thin": conv_net("n", (4, 8), 1)}       # half the widths


@pytest.fixture(scope="module")
def batch():
    rng = np.random.RandomState(0)
    return rng.randn(16, 8, 8, 3).astype("float32"), np.arange(16) % CLASSES


def read(model, names, x):
    """The named layers' outputs on `x` (a model of its own, run once)."""
    extractor = keras.Model(model.input, {n: model.get_layer(n).output for n in names})
    outputs = extractor(x, training=False)
    return [tf.convert_to_tensor(outputs[n]) for n in names]


# id: (student, constructor(student prefix), reference(loss, t, s); t, s: feature readers)
CASES = {
    "SoftLogits": ("thin", lambda p: kl.SoftLogits(),
                   lambda loss, t, s: response.soft_logits(s("logits"), t("logits"), 4.0)),
    "FitNet": ("thin", lambda p: kl.FitNet("t_stage1", f"{p}_stage1"),
               lambda loss, t, s: multiple.fitnet([s("stage1")], [t("stage1")], [loss.hint_map])),
    "AttentionTransfer": ("thin", lambda p: kl.AttentionTransfer("t_stage0", f"{p}_stage0"),
                          lambda loss, t, s: multiple.attention_transfer(
                              [s("stage0")], [t("stage0")], 1e3)),
    "ActivationBoundaries": ("thin",
                             lambda p: kl.ActivationBoundaries("t_stage1", f"{p}_stage1"),
                             lambda loss, t, s: multiple.ab_distillation(
                                 [s("stage1")], [t("stage1")], [loss.connector], 1.0, 3e-3)),
    "VID": ("thin", lambda p: kl.VID("t_stage1", f"{p}_stage1"),
            lambda loss, t, s: multiple.vid([s("stage1")], [t("stage1")], [loss.regressor])),
    "NST": ("thin", lambda p: kl.NST("t_stage1", f"{p}_stage1"),
            lambda loss, t, s: 25.0 * selectivity.nst([s("stage1")], [t("stage1")], "poly")),
    "NST-gaussian": ("thin", lambda p: kl.NST("t_stage0", f"{p}_stage0", kernel="gaussian"),
                     lambda loss, t, s: 8.0 * selectivity.nst([s("stage0")], [t("stage0")],
                                                              "gaussian")),
    "RKD": ("thin", lambda p: kl.RKD("t_pool", f"{p}_pool"),
            lambda loss, t, s: relation.rkd(s("pool"), t("pool"), (25.0, 50.0))),
    "FSP": ("same", lambda p: kl.FSP(["t_stage0", "t_stage1"], [f"{p}_stage0", f"{p}_stage1"]),
            lambda loss, t, s: shared.fsp([s("stage0"), s("stage1")],
                                          [t("stage0"), t("stage1")], 1e-3)),
    "KDSVD": ("same", lambda p: kl.KDSVD(["t_stage0", "t_stage1"], [f"{p}_stage0", f"{p}_stage1"]),
              lambda loss, t, s: shared.kd_svd([s("stage0"), s("stage1")],
                                               [t("stage0"), t("stage1")], "SVD", 1)),
    "KDEID": ("same", lambda p: kl.KDEID(["t_stage0", "t_stage1"], [f"{p}_stage0", f"{p}_stage1"]),
              lambda loss, t, s: shared.kd_svd([s("stage0"), s("stage1")],
                                               [t("stage0"), t("stage1")], "EID", 1)),
    "KD": ("thin", lambda p: kl.KD(),
           lambda loss, t, s: response.kd(s("logits"), t("logits"), 4.0)),
    "KD-standardized": ("thin", lambda p: kl.KD(2.0, logit_standardization=True),
                        lambda loss, t, s: response.kd(s("logits"), t("logits"), 2.0, True)),
    "DKD": ("thin", lambda p: kl.DKD(),     # the target: the teacher's top-1 class
            lambda loss, t, s: response.dkd(s("logits"), t("logits"),
                                            tf.argmax(t("logits"), -1), 1.0, 8.0, 4.0)),
    "DKD-standardized": ("thin", lambda p: kl.DKD(9.0, 72.0, 2.0, logit_standardization=True),
                         lambda loss, t, s: response.dkd(s("logits"), t("logits"),
                                                         tf.argmax(t("logits"), -1), 9.0, 72.0,
                                                         2.0, True)),
    "DIST": ("thin", lambda p: kl.DIST(),
             lambda loss, t, s: response.dist(s("logits"), t("logits"), 1.0, 1.0, 4.0)),
    "PKT": ("thin", lambda p: kl.PKT("t_pool", f"{p}_pool"),
            lambda loss, t, s: relation.pkt(s("pool"), t("pool"))),
    "SimilarityPreserving": ("thin", lambda p: kl.SimilarityPreserving("t_stage1", f"{p}_stage1"),
                             lambda loss, t, s: relation.similarity_preserving(s("stage1"),
                                                                               t("stage1"))),
    "CorrelationCongruence": ("thin", lambda p: kl.CorrelationCongruence("t_pool", f"{p}_pool"),
                              lambda loss, t, s: relation.correlation_congruence(
                                  loss.student_embed(s("pool")), loss.teacher_embed(t("pool")))),
    "IRG": ("thin", lambda p: kl.IRG(["t_stage0", "t_stage1", "t_pool", "t_logits"],
                                     [f"{p}_stage0", f"{p}_stage1", f"{p}_pool", f"{p}_logits"]),
            lambda loss, t, s: relation.irg(
                [s("stage0"), s("stage1"), s("pool"), s("logits")],
                [t("stage0"), t("stage1"), t("pool"), t("logits")], (0.1, 5.0, 5.0))),
}
PREFIX = {"same": "s", "thin": "n"}


def distiller(nets, student_key, losses, student_loss_weight=0.0, weights=None, fresh=False):
    student = nets[student_key]
    if fresh:
        student = keras.models.clone_model(student)
        student.set_weights(nets[student_key].get_weights())
    return keras.distillation.Distiller(
        teacher=nets["teacher"], student=student, distillation_losses=losses,
        distillation_loss_weights=weights, student_loss_weight=student_loss_weight)


def distillation_value(model, x):
    """The distiller's own weighted distillation loss on `x`
    (`student_loss_weight` 0: the total is the distillation term)."""
    assert model.student_loss_weight == 0.0
    return float(model.compute_loss(x=x, y=None, y_pred=model.student(x, training=True)))


def readers(nets, student_key, x):
    prefix = PREFIX[student_key]

    def reader(model, p):
        return lambda layer: read(model, [f"{p}_{layer}"], x)[0]
    return reader(nets["teacher"], "t"), reader(nets[student_key], prefix)


@pytest.mark.parametrize("case", CASES)
def test_value_is_the_tf_kd_function(nets, batch, case):
    student_key, make, reference = CASES[case]
    x, _ = batch
    loss = make(PREFIX[student_key])
    model = distiller(nets, student_key, [loss])
    expected = float(reference(loss, *readers(nets, student_key, x)))
    assert np.isfinite(expected) and expected != 0.0
    np.testing.assert_allclose(distillation_value(model, x), expected, rtol=1e-5, atol=1e-7)


def test_several_losses_sum_with_their_weights(nets, batch):
    """The brief's use: AT on two stages (TF1 sums them) and RKD, weighted."""
    x, _ = batch
    losses = [kl.AttentionTransfer("t_stage0", "n_stage0"),
              kl.AttentionTransfer("t_stage1", "n_stage1"), kl.RKD("t_pool", "n_pool")]
    model = distiller(nets, "thin", losses, weights=[1.0, 1.0, 0.5])
    t, s = readers(nets, "thin", x)
    expected = (float(multiple.attention_transfer([s("stage0"), s("stage1")],
                                                  [t("stage0"), t("stage1")], 1e3))
                + 0.5 * float(relation.rkd(s("pool"), t("pool"), (25.0, 50.0))))
    np.testing.assert_allclose(distillation_value(model, x), expected, rtol=1e-5)


# larger weights where the TF1 defaults make the term tiny on these nets
TRAINING_ARGS = {"FSP": {"weight": 1.0}}
LOSS_WEIGHTS = {"PKT": [3e4], "SimilarityPreserving": [3e3]}      # RepDistiller's -b


@pytest.mark.parametrize("case", CASES)
def test_distiller_trains(nets, batch, case):
    """On a fixed batch, `0.5 CE + 0.5 distillation` falls and so does the
    distillation term; the teacher stays, the loss's modules train."""
    student_key, make, _ = CASES[case]
    x, y = batch
    loss = make(PREFIX[student_key])
    for key, value in TRAINING_ARGS.get(case, {}).items():
        setattr(loss, key, value)
    model = distiller(nets, student_key, [loss], student_loss_weight=0.5, fresh=True,
                      weights=LOSS_WEIGHTS.get(case))
    own = [w for w in getattr(loss, "trainable_weights", [])]
    assert len(model.trainable_variables) == len(model.student.trainable_variables) + len(own)
    assert all(any(v is w for v in model.trainable_variables) for w in own)
    teacher_before = [w.copy() for w in nets["teacher"].get_weights()]
    own_before = [w.numpy().copy() for w in own]
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=len(x), epochs=8, verbose=0, shuffle=False).history
    total, distillation = history["total_loss"], history["distillation_loss"]
    assert np.all(np.isfinite(total))
    assert total[-1] < total[0], total
    assert distillation[-1] < distillation[0], distillation
    for before, after in zip(teacher_before, nets["teacher"].get_weights()):
        np.testing.assert_array_equal(before, after)
    for before, weight in zip(own_before, own):
        assert not np.allclose(before, weight.numpy()), weight.path


def test_trainable_modules(nets):
    """FitNet's hint map exists only when the widths differ; AB's connector
    and VID's regressor map the student's width to the teacher's."""
    fitnet = kl.FitNet("t_stage1", "n_stage1")
    same = kl.FitNet("t_stage1", "s_stage1")
    ab = kl.ActivationBoundaries("t_stage1", "n_stage1")
    vid = kl.VID("t_stage1", "n_stage1")
    distiller(nets, "thin", [fitnet, ab, vid])
    distiller(nets, "same", [same])
    assert fitnet.hint_map.kernel.shape == (16, 8)
    assert same.hint_map is None and not same.trainable_weights
    assert ab.connector.conv.kernel.shape == (1, 1, 8, 16)
    assert vid.regressor.alpha.shape == (1, 1, 1, 16)


@pytest.mark.parametrize("case", CASES)
def test_config_round_trip(case):
    student_key, make, _ = CASES[case]
    loss = make(PREFIX[student_key])
    config = loss.get_config()
    json.dumps(config)
    assert type(loss).from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == config


def test_non_default_arguments_survive_the_config():
    losses = [kl.SoftLogits(2.0, "a", "b"), kl.AttentionTransfer("a", "b", beta=7.0),
              kl.ActivationBoundaries("a", "b", margin=0.5, weight=0.1, name="ab1"),
              kl.NST("a", "b", kernel="linear", weight=3.0), kl.RKD("a", "b", 1.0, 2.0),
              kl.FSP(["a", "c"], ["b", "d"], weight=0.5), kl.KDSVD(["a", "c"], ["b", "d"], 2),
              kl.KD(2.0, True, "a", "b"), kl.DKD(2.0, 3.0, 1.5, True), kl.DIST(2.0, 0.5, 1.0),
              kl.CorrelationCongruence("a", "b", embed_dim=16, name="cc1"),
              kl.IRG(list("abcd"), list("efgh"), 1.0, 2.0, 3.0)]
    for loss in losses:
        restored = type(loss).from_config(loss.get_config())
        for key, value in loss.get_config().items():
            assert restored.get_config()[key] == value
    assert losses[3].weight == 3.0 and kl.NST("a", "b", kernel="linear").weight == 25.0
    assert kl.KDEID(["a", "c"], ["b", "d"]).dist_type == "EID"


@pytest.mark.parametrize("student_key,cases", [
    ("thin", ["SoftLogits", "FitNet", "AttentionTransfer", "ActivationBoundaries", "VID",
              "NST", "RKD", "DKD-standardized", "CorrelationCongruence", "IRG"]),
    ("same", ["FSP", "KDEID", "VID"])])
def test_keras_file_round_trip(nets, batch, tmp_path, student_key, cases):
    """A distiller saved to a `.keras` file loads with its losses, their
    arguments and modules' weights, and gives the same loss."""
    x, _ = batch
    losses = [CASES[c][1](PREFIX[student_key]) for c in cases]
    model = distiller(nets, student_key, losses, student_loss_weight=0.5, fresh=True)
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    own = [w for loss in losses for w in getattr(loss, "weights", [])]
    for i, weight in enumerate(model.student.weights + own):   # not the initial values
        weight.assign(weight + 0.01 * (i + 1))
    path = str(tmp_path / "distiller.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, keras.distillation.Distiller)
    assert [type(loss) for loss in loaded.distillation_losses] == [type(loss) for loss in losses]
    for original, restored in zip(losses, loaded.distillation_losses):
        assert restored.get_config() == original.get_config()
        own, loaded_own = getattr(original, "weights", []), getattr(restored, "weights", [])
        assert len(own) == len(loaded_own)
        for a, b in zip(own, loaded_own):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len(loaded.trainable_variables) == len(model.trainable_variables)
    np.testing.assert_allclose(loaded.student(x), model.student(x), rtol=1e-6)
    model.student_loss_weight = loaded.student_loss_weight = 0.0
    np.testing.assert_allclose(distillation_value(loaded, x), distillation_value(model, x),
                               rtol=1e-5)


class Subclassed(keras.Model):
    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(width, 3, activation="relu")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.logits = keras.layers.Dense(CLASSES)

    def call(self, x):
        return self.logits(self.pool(self.conv(x)))


def test_final_output_losses_on_subclassed_models(batch):
    """Reading the final outputs needs no symbolic model (as Keras' own
    `LogitsDistillation`)."""
    x, _ = batch
    teacher, student = Subclassed(8), Subclassed(4)
    t, s = teacher(x), student(x)
    model = keras.distillation.Distiller(teacher=teacher, student=student,
                                         distillation_losses=[kl.SoftLogits(2.0), kl.RKD()],
                                         student_loss_weight=0.0)
    expected = float(response.soft_logits(s, t, 2.0)) + float(relation.rkd(s, t))
    np.testing.assert_allclose(distillation_value(model, x), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="functional"):
        keras.distillation.Distiller(teacher=teacher, student=student,
                                     distillation_losses=[kl.VID("a", "b")])


def test_misuse_is_an_error(nets):
    with pytest.raises(ValueError, match="same shapes"):        # FSP needs the same widths
        distiller(nets, "thin", [kl.FSP(["t_stage0", "t_stage1"], ["n_stage0", "n_stage1"])])
    with pytest.raises(ValueError, match="No such layer"):
        distiller(nets, "thin", [kl.AttentionTransfer("t_stage9", "n_stage0")])
    with pytest.raises(ValueError, match="spatial size"):
        distiller(nets, "thin", [kl.AttentionTransfer("t_stage0", "n_stage1")])
    with pytest.raises(ValueError, match="embeddings"):
        distiller(nets, "thin", [kl.RKD("t_stage1", "n_stage1")])
    for loss in (kl.PKT, kl.CorrelationCongruence):
        with pytest.raises(ValueError, match="embeddings"):
            distiller(nets, "thin", [loss("t_stage1", "n_stage1")])
    with pytest.raises(ValueError, match="IRG cannot relate the student's first two layers"):
        distiller(nets, "thin", [kl.IRG(["t_stage0", "t_stage1", "t_pool", "t_logits"],
                                        ["n_stage1", "n_stage0", "n_pool", "n_logits"])])
    with pytest.raises(ValueError, match="four layers"):
        kl.IRG(["a", "b", "c", "d", "e"], ["a", "b", "c", "d", "e"])
    with pytest.raises(ValueError, match="both models"):
        kl.AttentionTransfer("t_stage0", None)
    with pytest.raises(ValueError, match="at least 2"):
        kl.KDSVD(["t_stage1"], ["s_stage1"])
    with pytest.raises(ValueError, match="Unknown NST kernel"):
        kl.NST("a", "b", kernel="cubic")
    fsp = kl.FSP(["t_stage0", "t_stage1"], ["s_stage0", "s_stage1"])
    distiller(nets, "same", [fsp])
    with pytest.raises(ValueError, match="its own instance"):   # it would read the wrong models
        distiller(nets, "same", [fsp], fresh=True)
