"""Relational knowledge as a `keras.distillation` loss (`tf_kd.losses.relation`)."""

import keras

from tf_kd.keras_losses.base import LayerLoss, MultiLayerLoss, TrainableLayerLoss
from tf_kd.losses import relation


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class RKD(LayerLoss):
    """Park et al., "Relational knowledge distillation", CVPR 2019:
    `relation.rkd`, the Huber distances between the teacher's and the
    student's distance and angle potentials over the batch, on embeddings
    `[B, C]` (l2-normalised; the sizes may differ). TF1 reads the pooled
    vectors; the final outputs when no layer is named.

    Args:
        distance_weight, angle_weight: TF1 `ResNet.py`'s 25 and 50.
    """

    def __init__(self, teacher_layer_name=None, student_layer_name=None,
                 distance_weight=25.0, angle_weight=50.0):
        super().__init__(teacher_layer_name, student_layer_name)
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight

    def check_shapes(self, teacher_shape, student_shape):
        if len(teacher_shape) != 2 or len(student_shape) != 2:
            raise ValueError(f"RKD reads embeddings [B, C] (e.g. pooled features); got teacher "
                             f"{teacher_shape}, student {student_shape}.")

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return relation.rkd(student_outputs, teacher_outputs,
                            (self.distance_weight, self.angle_weight))

    def get_config(self):
        return {**super().get_config(), "distance_weight": self.distance_weight,
                "angle_weight": self.angle_weight}


def _embeddings(loss, teacher_shape, student_shape):
    if len(teacher_shape) != 2 or len(student_shape) != 2:
        raise ValueError(f"{type(loss).__name__} reads embeddings [B, C] (e.g. pooled "
                         f"features); got teacher {teacher_shape}, student {student_shape}.")


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class PKT(LayerLoss):
    """Passalis & Tefas, ECCV 2018, as RepDistiller (`relation.pkt`): the KL
    divergence between the teacher's and the student's conditional
    probabilities from cosine similarities over the batch, on embeddings
    `[B, C]` (the sizes may differ). RepDistiller's `CE + 30000 PKT` on the
    pooled vectors: `distillation_loss_weights=[30000]`,
    `student_loss_weight=0.5` and the learning rate times 2."""

    def check_shapes(self, teacher_shape, student_shape):
        _embeddings(self, teacher_shape, student_shape)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return relation.pkt(student_outputs, teacher_outputs)


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class SimilarityPreserving(LayerLoss):
    """Tung & Mori, ICCV 2019, as RepDistiller (`relation.similarity_preserving`):
    the squared distance between the row-normalised `B x B` Gram matrices of
    one layer of each model, over `B^2` (any shapes; RepDistiller: the last
    stage's output, weight 3000 next to the CE)."""

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return relation.similarity_preserving(student_outputs, teacher_outputs)


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class CorrelationCongruence(TrainableLayerLoss):
    """Peng et al., ICCV 2019, as RepDistiller (`relation.correlation_congruence`)
    on embeddings `[B, C]` (RepDistiller: the pooled vectors, weight 0.02 next
    to the CE), each through its own trainable `relation.LinearEmbed` to
    `embed_dim` features (both train, as RepDistiller's `embed_s` and
    `embed_t`).

    Args:
        embed_dim: RepDistiller's `--feat_dim` (128).
    """

    def __init__(self, teacher_layer_name, student_layer_name, embed_dim=128, name=None):
        super().__init__(teacher_layer_name, student_layer_name, name=name)
        self.embed_dim = embed_dim

    def check_shapes(self, teacher_shape, student_shape):
        _embeddings(self, teacher_shape, student_shape)

    def build(self, teacher_shape, student_shape):
        self.student_embed = relation.LinearEmbed(self.embed_dim, name="embed_s")
        self.teacher_embed = relation.LinearEmbed(self.embed_dim, name="embed_t")
        self.student_embed.build(student_shape)
        self.teacher_embed.build(teacher_shape)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return relation.correlation_congruence(self.student_embed(student_outputs),
                                               self.teacher_embed(teacher_outputs))

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim}


@keras.saving.register_keras_serializable(package="tf_kd.keras_losses")
class IRG(MultiLayerLoss):
    """Liu et al., CVPR 2019, as AberHu/Knowledge-Distillation-Zoo
    (`relation.irg`): four layers of each model, in this order: two
    consecutive stage outputs (the reference: the last two, after their
    ReLU), the pooled vector and the logits. Vertices: the logits' mean
    squared error; edges: the normalised squared distances between the
    batch's examples at the other three layers; transformation: each
    example's normalised distance between the two stages, within each model.
    The models' widths may differ; within a model the later stage has the
    earlier one's width or twice it, and not a larger size.

    Args:
        vertex_weight, edge_weight, transformation_weight: the reference's
            `--w_irg_vert 0.1 --w_irg_edge 5.0 --w_irg_tran 5.0` (next to the
            CE weighted 1: `student_loss_weight=0.5` and the learning rate
            times 2).
    """

    min_layers = 4

    def __init__(self, teacher_layer_names, student_layer_names, vertex_weight=0.1,
                 edge_weight=5.0, transformation_weight=5.0):
        super().__init__(teacher_layer_names, student_layer_names)
        if len(self.teacher_layer_names) != 4:
            raise ValueError("IRG reads four layers of each model: two consecutive stages, the "
                             f"pooled vector and the logits; got {self.teacher_layer_names}.")
        self.vertex_weight = vertex_weight
        self.edge_weight = edge_weight
        self.transformation_weight = transformation_weight

    def check_shapes(self, teacher_shapes, student_shapes):
        for role, shapes in (("teacher", teacher_shapes), ("student", student_shapes)):
            problem = relation.irg_transformation_problem(*shapes[:2])
            if problem:
                raise ValueError(f"IRG cannot relate the {role}'s first two layers: {problem}.")
        if tuple(teacher_shapes[3][1:]) != tuple(student_shapes[3][1:]):
            raise ValueError(f"IRG's vertices are the logits, of the same shape in both models; "
                             f"got teacher {teacher_shapes[3]}, student {student_shapes[3]}.")

    def feature_loss(self, student_feats, teacher_feats):
        return relation.irg(student_feats, teacher_feats, (
            self.vertex_weight, self.edge_weight, self.transformation_weight))

    def get_config(self):
        return {**super().get_config(), "vertex_weight": self.vertex_weight,
                "edge_weight": self.edge_weight,
                "transformation_weight": self.transformation_weight}
