"""DFKD's transfer set (Wang, "Data-free knowledge distillation with soft
targeted transfer set synthesis", AAAI 2021): pseudo samples made from the
trained teacher alone, saved to and reused from a `.npz` file.

`synthesise` samples soft targets from the teacher's modelled logit space
(`tf_kd.losses.data_free`) and turns random noise into images the frozen
teacher, in inference mode, maps onto them: Adam on the inputs for a fixed
number of steps, one compiled graph per batch. `noise_baseline` is the honest
lower bound: the same starting noise, not optimised, labelled by the teacher.

Pseudo samples are images: after every step they are projected onto the
pixel range `[0, 255]` (in the normalised space the teacher reads), and they
are stored as uint8 pixels, so the training pipeline treats them as any
training set (normalisation with the dataset's constants, TF1 augmentation).
"""

import dataclasses
import json
import os
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from dataloader import preprocessing
from tf_kd import files
from tf_kd.errors import UserError
from tf_kd.losses import data_free

# The teacher's first convolution is `conv0`, then `bn0` and its ReLU: the
# activation term reads the ReLU's output (see `Synthesis`).
FIRST_ACTIVATION = "bn0_relu"
CLASSIFIER = "full"
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8   # Kingma & Ba's defaults


@dataclasses.dataclass(frozen=True)
class Synthesis:
    """Hyper-parameters of the synthesis. The paper's notes give none of
    their values; these defaults are this port's:

    sigma: the standard deviation of every logit (`D = sigma I`). 5: about
        the logit scale the Fashion-MNIST teacher reaches on optimised inputs
        (at 10 the objective stalls, the teacher cannot produce such logits).
    tau: the temperature of the soft targets and of the teacher's output;
        20, the temperature of Zero-Shot KD's data impressions.
    steps, learning_rate: Adam steps per batch and Adam's step size in
        normalised input units; 30 steps of 0.2 fit 10,000 samples of the
        width-0.25 ResNet32 teacher into about 8 minutes on 2 CPU cores.
    activation_weight: `alpha`, the weight of `L_a`; 1e-5 (in a trial at
        1e-4 the term drove three quarters of the pixels to 0 or 255 and the
        teacher met the targets' top-1 class on 56% of the samples, against
        73% without it).
        `L_a` reads the first convolution after its batch norm and ReLU, the
        activation the rest of the network sees (the raw convolution's l1
        norm would also reward large negative responses the ReLU discards).
    """
    sigma: float = 5.0
    tau: float = 20.0
    steps: int = 30
    learning_rate: float = 0.2
    activation_weight: float = 1e-5


@dataclasses.dataclass(frozen=True, eq=False)
class TransferSet:
    """uint8 NHWC pseudo images, the teacher's logits on them, and the soft
    targets they were synthesised for (None for the noise baseline)."""
    images: np.ndarray
    teacher_logits: np.ndarray
    targets: Optional[np.ndarray] = None
    settings: str = "{}"     # how the set was made, as JSON

    @property
    def kind(self):
        return "noise" if self.targets is None else "synthesised"

    @property
    def labels(self):
        """The teacher's top-1 class of each pseudo sample."""
        return np.argmax(self.teacher_logits, axis=-1).astype(np.int32)

    def summary(self):
        """One line: size, kind, classes the teacher sees, target match."""
        counts = np.bincount(self.labels, minlength=self.teacher_logits.shape[-1])
        line = (f"{len(self.images)} {self.kind} pseudo samples, teacher's "
                f"top-1 class counts {counts.tolist()}")
        if self.targets is not None:
            match = np.mean(self.labels == np.argmax(self.targets, axis=-1))
            line += f", top-1 of the soft target on {100 * match:.1f}%"
        return line


class Synthesizer:
    """Optimises batches of inputs through the frozen teacher (inference
    mode) towards soft targets: `steps` Adam steps on
    `KL(y_soft || softmax(a_T / tau)) + alpha * L_a`, each followed by the
    projection onto the pixel range."""

    def __init__(self, teacher, mean, std, synthesis=Synthesis()):
        self.synthesis = synthesis
        self.probe = keras.Model(teacher.input, {
            "activation": teacher.get_layer(FIRST_ACTIVATION).output,
            "logits": teacher.output["logits"]})
        self.low, self.high = pixel_range(mean, std)

    def objective(self, images, targets):
        """The batch mean of the synthesis loss."""
        outputs = self.probe(images, training=False)
        return data_free.synthesis_loss(     # in float32, whatever the teacher computes in
            targets, outputs["logits"], tf.cast(outputs["activation"], tf.float32),
            self.synthesis.tau, self.synthesis.activation_weight)

    @tf.function(reduce_retracing=True)
    def optimise(self, images, targets):
        """The batch `images` after the synthesis steps. Each sample descends
        its own objective (the batch sum is differentiated), so the result
        does not depend on the batch it shares."""
        count = tf.cast(tf.shape(images)[0], tf.float32)
        first, second = tf.zeros_like(images), tf.zeros_like(images)
        for step in tf.range(1, self.synthesis.steps + 1):
            with tf.GradientTape() as tape:
                tape.watch(images)
                loss = count * self.objective(images, targets)
            gradient = tape.gradient(loss, images)
            first = ADAM_BETA1 * first + (1 - ADAM_BETA1) * gradient
            second = ADAM_BETA2 * second + (1 - ADAM_BETA2) * tf.square(gradient)
            t = tf.cast(step, tf.float32)
            update = (first / (1 - ADAM_BETA1 ** t)) / (
                tf.sqrt(second / (1 - ADAM_BETA2 ** t)) + ADAM_EPSILON)
            images = tf.clip_by_value(images - self.synthesis.learning_rate * update,
                                      self.low, self.high)
        return images


def pixel_range(mean, std):
    """The normalised values of pixels 0 and 255, per channel."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return (0 - mean) / std, (255 - mean) / std


def initial_noise(count, image_shape, mean, std, seed):
    """Random inputs: standard normal in the normalised space (the data's
    first two moments), clipped to the pixel range."""
    low, high = pixel_range(mean, std)
    noise = tf.random.stateless_normal([count, *image_shape], [seed, 1])
    return tf.clip_by_value(noise, low, high)


def to_pixels(images, mean, std):
    """Normalised images to uint8 pixels."""
    return np.clip(np.rint(np.asarray(images) * std + mean), 0, 255).astype(np.uint8)


def teacher_logits(teacher, pixels, mean, std, batch_size):
    """The teacher's logits (inference mode) on uint8 images."""
    logits = [teacher(preprocessing.normalize(pixels[i:i + batch_size], mean, std),
                      training=False)["logits"].numpy()
              for i in range(0, len(pixels), batch_size)]
    return np.concatenate(logits)


def synthesise(teacher, count, mean, std, synthesis=Synthesis(), batch_size=128,
               seed=0, verbose=True):
    """`count` pseudo samples for soft targets sampled from the teacher's
    modelled logit space (seeded: the same set for the same seed)."""
    correlation = data_free.correlation_matrix(teacher.get_layer(CLASSIFIER).kernel)
    logits = data_free.sample_logits(correlation, synthesis.sigma, count, [seed, 0])
    targets = data_free.soft_targets(logits, synthesis.tau)
    noise = initial_noise(count, teacher.input.shape[1:], mean, std, seed)
    synthesizer = Synthesizer(teacher, mean, std, synthesis)
    start, batches = time.time(), []
    for i in range(0, count, batch_size):
        batches.append(synthesizer.optimise(noise[i:i + batch_size],
                                            targets[i:i + batch_size]).numpy())
        if verbose:
            print(f"synthesised {i + len(batches[-1])}/{count} pseudo samples "
                  f"({time.time() - start:.0f} s)", flush=True)
    pixels = to_pixels(np.concatenate(batches), mean, std)
    settings = {**dataclasses.asdict(synthesis), "seed": seed,
                "seconds": round(time.time() - start, 1)}
    return TransferSet(pixels, teacher_logits(teacher, pixels, mean, std, batch_size),
                       targets.numpy(), json.dumps(settings))


def noise_baseline(teacher, count, mean, std, batch_size=128, seed=0):
    """The synthesis' starting noise, not optimised, labelled by the teacher."""
    pixels = to_pixels(initial_noise(count, teacher.input.shape[1:], mean, std, seed),
                       mean, std)
    return TransferSet(pixels, teacher_logits(teacher, pixels, mean, std, batch_size),
                       settings=json.dumps({"seed": seed}))


def save(path, transfer_set):
    """Write `transfer_set` to the `.npz` file `path` (atomically)."""
    arrays = {"images": transfer_set.images, "teacher_logits": transfer_set.teacher_logits,
              "settings": np.array(transfer_set.settings)}
    if transfer_set.targets is not None:
        arrays["targets"] = transfer_set.targets
    with files.replacing(path) as partial:
        with open(partial, "wb") as f:
            np.savez(f, **arrays)


def load(path):
    """The transfer set saved at `path`; a damaged file is a `UserError`."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return TransferSet(saved["images"], saved["teacher_logits"],
                               saved["targets"] if "targets" in saved else None,
                               str(saved["settings"]))
    except Exception as error:    # numpy and zipfile raise many kinds
        raise UserError(f"--transfer_set={path} is not a readable transfer set "
                        f"({type(error).__name__}: {error}): delete it to build it "
                        "again, or name another file.") from None


def check_fits(path, teacher, data, noise_baseline=False):
    """If `path` holds a transfer set, check that `teacher` reads its images,
    that it has `data`'s classes and that it is of the kind asked for (the
    noise baseline or synthesised); raise `UserError` if not."""
    if not os.path.exists(path):
        return
    transfer_set = load(path)
    images, logits = transfer_set.images, transfer_set.teacher_logits
    expected = (None, *teacher.input.shape[1:])
    if (images.dtype != np.uint8 or images.ndim != 4
            or tuple(images.shape[1:]) != expected[1:]):
        raise UserError(f"--transfer_set={path} holds {images.dtype} images of shape "
                        f"{images.shape[1:]}; the teacher reads uint8 images of shape "
                        f"{expected[1:]} ({data.name}): name a set built for it.")
    if logits.ndim != 2 or logits.shape != (len(images), data.num_classes):
        raise UserError(f"--transfer_set={path} holds logits of shape {logits.shape} for "
                        f"{len(images)} images; {data.name} has {data.num_classes} "
                        "classes: name a set built for this teacher.")
    _check_kind(transfer_set, path, noise_baseline)


def _check_kind(transfer_set, path, noise_baseline):
    kind = "noise" if noise_baseline else "synthesised"
    if transfer_set.kind != kind:
        fix = "drop" if noise_baseline else "pass"
        raise UserError(f"--transfer_set={path} holds a {transfer_set.kind} transfer set, "
                        f"not a {kind} one: {fix} --dfkd_noise_baseline, or name another "
                        "--transfer_set.")


def load_or_build(path, teacher, count, mean, std, synthesis=None, batch_size=128,
                  seed=0, verbose=True):
    """The transfer set saved at `path`, else a new one of `count` samples
    saved there: synthesised with `synthesis`, or the noise baseline if it is
    None. A saved set of the other kind is an error."""
    if os.path.exists(path):
        transfer_set = load(path)
        _check_kind(transfer_set, path, synthesis is None)
        print(f"Transfer set loaded from {path}")
        return transfer_set
    if synthesis is None:
        transfer_set = noise_baseline(teacher, count, mean, std, batch_size, seed)
    else:
        transfer_set = synthesise(teacher, count, mean, std, synthesis, batch_size,
                                  seed, verbose)
    save(path, transfer_set)
    print(f"Transfer set saved to {path}")
    return transfer_set
