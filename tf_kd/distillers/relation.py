"""Relational knowledge: relations between examples (TF1 `nets/Relation.py`);
beyond TF1, RepDistiller's PKT, SP, CC and CRD, and IRG."""

import numpy as np
import tensorflow as tf

from nets import feature_names
from tf_kd import networks
from tf_kd.distillers.base import Distiller, class_loss, sigmoid, unpack
from tf_kd.distillers.multiple import stage_features
from tf_kd.errors import UserError
from tf_kd.losses import relation


class RKD(Distiller):
    """Park et al., "Relational knowledge distillation", CVPR 2019.

    TF1: `CE + decay + 25 * distance + 50 * angle` on the pooled vectors.
    """

    reads = (networks.POOL,)

    def __init__(self, student, teacher, weights=(25.0, 50.0), **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.loss_weights = tuple(weights)

    def train_step(self, data):
        return self.multitask_step(data, lambda student, teacher: relation.rkd(
            student["pool"], teacher["pool"], self.loss_weights))


class MHGD(Distiller):
    """Lee & Song, "Graph-based knowledge distillation by multi-head
    attention network", BMVC 2019.

    Each stage is compressed to its leading right singular vector (teacher
    one, student four aligned to it, by `svd_eid`). Initialisation epochs:
    only the multi-head attention networks train, on the estimator loss
    `1 - cosine` plus `5e-4 * sum(w**2)` on their weights. Afterwards they are
    frozen and the student trains on `CE + decay` plus the KL divergence
    between the `tanh` attention graphs, whose gradient is clipped to
    `||g_CE|| * sigmoid(epoch - init_epoch)` per variable.
    """

    reads = (networks.STAGES,)
    same_widths = True
    default_init_epoch = 40

    def __init__(self, student, teacher, num_head=8, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.names = feature_names(student)
        dims = [teacher.output[n].shape[-1] for n in self.names]
        self.graphs = relation.multi_head_graphs(dims, num_head)
        # The head dropping's noise is drawn from (this number, step): a
        # resumed run draws it as the uninterrupted one did.
        self.drop_seed = int(np.random.randint(2 ** 31))

    def graph_variables(self):
        return [v for graph in self.graphs for v in graph.trainable_variables]

    def train_step(self, data):
        if self.initializing:
            return self.estimator_step(data)
        images, labels = unpack(data)
        teacher = stage_features(self.teacher_outputs(images), self.names)
        with tf.GradientTape(persistent=True) as tape:
            student = self.student(images, training=True)
            ce = class_loss(labels, student["logits"])
            decay = self.weight_decay(self.student)
            student_vectors, teacher_vectors = relation.singular_vectors(
                stage_features(student, self.names), teacher)
            distillation = relation.mhgd(student_vectors, teacher_vectors, self.graphs)
        self.apply_clipped_gradients(ce, decay, distillation, tape,
                                     self.student.trainable_variables,
                                     sigmoid(self.epoch - self.init_epoch))
        del tape
        return self.report(ce + decay + distillation, labels, student["logits"],
                           distillation)

    def estimator_step(self, data):
        images, labels = unpack(data)
        teacher = stage_features(self.teacher_outputs(images), self.names)
        vectors = [relation.teacher_singular_vector(f) for f in teacher]
        with tf.GradientTape() as tape:
            seed = tf.stack([tf.constant(self.drop_seed, tf.int64),
                             tf.convert_to_tensor(self.optimizer.iterations)])
            loss = relation.mha_loss(vectors, self.graphs, seed=seed)
        self.apply_gradients(loss, tape, self.graph_variables())
        logits = self.student(images, training=False)["logits"]
        return self.report(loss, labels, logits, loss)


# RepDistiller (HobbitLong/RepDistiller b84f547c5db6a35318d4671d7d5c4de74c822403):
# `train_student.py` trains `gamma CE + alpha KD + beta loss_kd` with the
# defaults -r (gamma) 1 and, in `scripts/run_cifar_distill.sh`, -a 0 and the
# -b below; `helper/loops.py` says which features each method reads.

class PKT(Distiller):
    """Passalis & Tefas, "Learning deep representations with probabilistic
    knowledge transfer", ECCV 2018, as RepDistiller (`distiller_zoo/PKT.py`):
    `CE + 30000 PKT + decay` on the pooled vectors (`feat_s[-1]`;
    `relation.pkt`)."""

    reads = (networks.POOL,)

    def __init__(self, student, teacher, weight=30000.0, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.weight = weight

    def train_step(self, data):
        return self.multitask_step(data, lambda student, teacher: self.weight * relation.pkt(
            student["pool"], teacher["pool"]))


class SimilarityPreserving(Distiller):
    """Tung & Mori, "Similarity-preserving knowledge distillation", ICCV 2019,
    as RepDistiller (`distiller_zoo/SP.py`): `CE + 3000 SP + decay` on the
    last stage's output (`feat_s[-2]`, after its ReLU; here the last
    `feat{i}`; `relation.similarity_preserving`). The widths and sizes may
    differ: SP compares `B x B` Gram matrices."""

    reads = (networks.STAGES,)

    def __init__(self, student, teacher, weight=3000.0, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.weight = weight
        self.student_feature = feature_names(student)[-1]
        self.teacher_feature = feature_names(teacher)[-1]

    def train_step(self, data):
        return self.multitask_step(
            data, lambda student, teacher: self.weight * relation.similarity_preserving(
                student[self.student_feature], teacher[self.teacher_feature]))


class CorrelationCongruence(Distiller):
    """Peng et al., "Correlation congruence for knowledge distillation", ICCV
    2019, as RepDistiller (`distiller_zoo/CC.py`, `models/util.py`
    `LinearEmbed`): each network's pooled vector (`feat_s[-1]`) goes through
    its own trainable `LinearEmbed` to 128 features (`--feat_dim`), which
    also bridges different widths, and the student and both embeddings train
    on `CE + 0.02 CC + decay` (`relation.correlation_congruence`)."""

    reads = (networks.POOL,)

    def __init__(self, student, teacher, weight=0.02, embed_dim=128, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.weight = weight
        self.student_embed = relation.LinearEmbed(embed_dim, name="embed_s")
        self.teacher_embed = relation.LinearEmbed(embed_dim, name="embed_t")
        self.student_embed.build(student.output["pool"].shape)
        self.teacher_embed.build(teacher.output["pool"].shape)

    def train_step(self, data):
        return self.multitask_step(
            data, lambda student, teacher: self.weight * relation.correlation_congruence(
                self.student_embed(student["pool"]), self.teacher_embed(teacher["pool"])))


class CRD(Distiller):
    """Tian et al., "Contrastive representation distillation", ICLR 2020, as
    RepDistiller (HobbitLong/RepDistiller
    b84f547c5db6a35318d4671d7d5c4de74c822403, `crd/criterion.py`,
    `crd/memory.py`, the CRD parts of `helper/loops.py`; `train_student.py
    --distill crd -a 0 -b 0.8` of `scripts/run_cifar_distill.sh`, with its
    defaults `--feat_dim 128 --nce_k 16384 --nce_t 0.07 --nce_m 0.5 --mode
    exact`): `CE + 0.8 CRD + decay` (`relation.crd`). Each network's pooled
    vector (`feat_s[-1]`) goes through its own trainable `Embed` to 128
    l2-normalised features (which also bridges different widths), scored
    against a memory bank of every training image's embedding of the other
    network (`relation.ContrastMemory`), whose entries for the batch then
    move towards the new embeddings with momentum 0.5.

    The memory banks are indexed by the images' places in the training split:
    the training batches carry them (`example_indices`) and `train_labels`
    are that split's labels. As `CIFAR100InstanceSample(mode='exact')`
    (`dataset/cifar100.py`) each image's contrast set is its own index
    followed by `nce_k` indices drawn uniformly from the images of the other
    classes; here they are drawn at each step from a class-sorted index table
    (a gather of `nce_k` per image, whatever the split's size), by a seed and
    the step, so a resumed run draws what the uninterrupted one did. The
    draws are with replacement (the reference's without, unless `nce_k`
    exceeds the other classes' images): each negative has the same
    distribution, the expected loss and gradient are the same
    (docs/differences.md). Where the training images include unlabelled
    ones (`--labels_per_class` with `--unlabeled=rest`; `train_labels` -1),
    which have no class, every image's `nce_k` negatives are drawn uniformly
    from all the training images instead, as the reference's memory draws
    them when its data set gives no contrast indices (`ContrastMemory.forward`
    with `idx=None`: `multinomial.draw` over uniform weights). One replica
    only: the banks are updated in place from the replica's batch.
    """

    reads = (networks.POOL,)
    example_indices = True
    flags = {"crd_weight": "weight", "crd_feat_dim": "feat_dim", "crd_nce_k": "nce_k",
             "crd_nce_t": "nce_t", "crd_nce_m": "nce_m"}

    def __init__(self, student, teacher, train_labels, weight=0.8, feat_dim=128, nce_k=16384,
                 nce_t=0.07, nce_m=0.5, **kwargs):
        super().__init__(student, teacher, **kwargs)
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            raise UserError("CRD updates its memory banks in place from each batch: it "
                            "trains on one replica (--strategy=default).")
        labels = np.asarray(train_labels, np.int64).reshape(-1)
        self.weight, self.nce_k = weight, nce_k
        self.by_instance = bool(np.any(labels < 0))
        if not self.by_instance:
            counts = np.bincount(labels)
            if np.any(counts == len(labels)):
                raise UserError("CRD draws each image's negatives from the other classes: "
                                "the training images are all of one class.")
            # the training split sorted by class: class c is at [start_c, start_c + count_c)
            self.labels = tf.constant(labels)
            self.by_class = tf.constant(np.argsort(labels, kind="stable"))
            self.class_start = tf.constant(np.cumsum(counts) - counts)
            self.class_count = tf.constant(counts)
        self.student_embed = relation.Embed(feat_dim, name="embed_s")
        self.teacher_embed = relation.Embed(feat_dim, name="embed_t")
        self.student_embed.build(student.output["pool"].shape)
        self.teacher_embed.build(teacher.output["pool"].shape)
        self.contrast = relation.ContrastMemory(len(labels), feat_dim, nce_t, nce_m,
                                                name="contrast")
        self.sample_seed = int(np.random.randint(2 ** 31))

    def contrast_indices(self, indices):
        """`[B, 1 + nce_k]`: each image's index, then `nce_k` indices of
        training images of other classes (of any image, `by_instance`),
        drawn uniformly by (seed, step)."""
        seed = tf.stack([tf.constant(self.sample_seed, tf.int64),
                         tf.convert_to_tensor(self.optimizer.iterations, tf.int64)])
        draws = tf.random.stateless_uniform([tf.shape(indices)[0], self.nce_k], seed,
                                            minval=None, maxval=None, dtype=tf.int64)
        if self.by_instance:
            return tf.concat([indices[:, None], tf.math.floormod(draws, self.contrast.size)], 1)
        label = tf.gather(self.labels, indices)
        start, count = tf.gather(self.class_start, label), tf.gather(self.class_count, label)
        # a place among the other classes' images, skipping the image's own class
        place = tf.math.floormod(draws, (self.contrast.size - count)[:, None])
        place += tf.where(place >= start[:, None], count[:, None], 0)
        return tf.concat([indices[:, None], tf.gather(self.by_class, place)], 1)

    def train_step(self, data):
        (images, indices), labels = unpack(data)
        indices = tf.cast(indices, tf.int64)
        contrast_indices = self.contrast_indices(indices)
        return self.multitask_step((images, labels), lambda student, teacher: self.weight * (
            relation.crd(self.student_embed(student["pool"]), self.teacher_embed(teacher["pool"]),
                         indices, contrast_indices, self.contrast)))


class IRG(Distiller):
    """Liu et al., "Knowledge distillation via instance relationship graph",
    CVPR 2019, as AberHu/Knowledge-Distillation-Zoo
    (65470c846c1300d555815da26999cbe2b51fc815, `kd_losses/irg.py`,
    `train_kd.py --kd_mode irg --lambda_kd 1.0 --w_irg_vert 0.1 --w_irg_edge
    5.0 --w_irg_tran 5.0`, its `example_train_script.sh`): `CE + IRG + decay`
    (`relation.irg`). It reads what the reference's resnets hand it: the
    last two stage outputs after their ReLU (`rb2`, `rb3`; here the last two
    `feat{i}`), the pooled vector (`feat`) and the logits (`out`). The
    vertices are the logits (mean squared error), the edges the normalised
    squared distances between the batch's examples at the pooled vector and
    both stages, the transformation each example's normalised squared
    distance between the two stages of one network.

    The edges are `B x B` matrices and the transformation stays within each
    network, so the student's widths and sizes may differ from the
    teacher's, as in the reference, without a connector. Within a network
    the later stage must have the earlier one's width or twice it, and not a
    larger size (the reference pools the earlier stage down and averages the
    later one's channel pairs): other networks are refused, naming the
    stages.
    """

    reads = (networks.STAGES, networks.POOL)
    flags = {"irg_w_vert": "vertex_weight", "irg_w_edge": "edge_weight",
             "irg_w_tran": "transformation_weight"}

    def __init__(self, student, teacher, vertex_weight=0.1, edge_weight=5.0,
                 transformation_weight=5.0, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.loss_weights = (vertex_weight, edge_weight, transformation_weight)
        self.student_names = self.stage_pair(student, "student")
        self.teacher_names = self.stage_pair(teacher, "teacher")

    @staticmethod
    def stage_pair(network, role):
        """The names of `network`'s last two stage features, checked."""
        names = feature_names(network)[-2:]
        if len(names) < 2:
            raise UserError(f"IRG relates the last two stage features of each network; the "
                            f"{role} ({network.name}) has {len(names)}.")
        problem = relation.irg_transformation_problem(*(network.output[n].shape for n in names))
        if problem:
            raise UserError(f"IRG cannot relate the {role}'s ({network.name}) {names[0]} and "
                            f"{names[1]}: {problem}.")
        return names

    def train_step(self, data):
        return self.multitask_step(data, lambda student, teacher: relation.irg(
            [*stage_features(student, self.student_names), student["pool"], student["logits"]],
            [*stage_features(teacher, self.teacher_names), teacher["pool"], teacher["logits"]],
            self.loss_weights))
