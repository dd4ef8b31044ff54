"""The distillation losses of `tf_kd.losses` as `keras.distillation` losses.

Any pair of functional Keras models can be distilled with Keras' own
`keras.distillation.Distiller`, naming the layers each loss reads:

    distiller = keras.distillation.Distiller(
        teacher=teacher, student=student,
        distillation_losses=[AttentionTransfer("t_block2", "s_block2"),
                             RKD("t_pool", "s_pool")])

Each class calls the function of `tf_kd.losses` that `tf_kd.distillers`
trains with; `docs/keras_distillation.md` lists them and what of the TF1
procedures only `tf_kd.distillers` reproduces.
"""

from tf_kd.keras_losses.base import LayerLoss, MultiLayerLoss, TrainableLayerLoss
from tf_kd.keras_losses.multiple import VID, ActivationBoundaries, AttentionTransfer, FitNet
from tf_kd.keras_losses.relation import (IRG, PKT, RKD, CorrelationCongruence,
                                         SimilarityPreserving)
from tf_kd.keras_losses.response import DIST, DKD, KD, SoftLogits
from tf_kd.keras_losses.selectivity import NST
from tf_kd.keras_losses.shared import FSP, KDEID, KDSVD

__all__ = ["DIST", "DKD", "FSP", "IRG", "KD", "KDEID", "KDSVD", "NST", "PKT", "RKD", "VID",
           "ActivationBoundaries", "AttentionTransfer", "CorrelationCongruence", "FitNet",
           "LayerLoss", "MultiLayerLoss", "SimilarityPreserving", "SoftLogits",
           "TrainableLayerLoss"]
