"""Distillation methods, grouped as in the TF1 repository by kind of knowledge:
response (`response.py`), multi-connection (`multiple.py`), shared
representation (`shared.py`) and relation (`relation.py`); beyond TF1,
knowledge adaptation for dense prediction (`adaptation.py`) and data-free
distillation on a synthesised transfer set (`data_free.py`), and the logit
and relation methods of RepDistiller, mdistiller and DIST (in `response.py`
and `relation.py`), CRD (`relation.py`), ReviewKD (`multiple.py`) and IRG
(`relation.py`)."""

from tf_kd.distillers.adaptation import KnowledgeAdaptation
from tf_kd.distillers.base import Baseline, Distiller, InitializationDistiller
from tf_kd.distillers.data_free import DataFreeKD
from tf_kd.distillers.multiple import (NST, VID, ABDistillation, AttentionTransfer, FitNet,
                                      ReviewKD)
from tf_kd.distillers.relation import (CRD, IRG, MHGD, PKT, RKD, CorrelationCongruence,
                                      SimilarityPreserving)
from tf_kd.distillers.response import DIST, DKD, DML, KD, FactorTransfer, SoftLogits
from tf_kd.distillers.shared import FSP, KDEID, KDSVD

# The TF1 `--Distillation` keys, then the methods added beyond TF1.
DISTILLERS = {
    "None": Baseline,
    "Soft_logits": SoftLogits,
    "DML": DML,
    "FT": FactorTransfer,
    "FitNet": FitNet,
    "AT": AttentionTransfer,
    "AB": ABDistillation,
    "VID": VID,
    "FSP": FSP,
    "KD-SVD": KDSVD,
    "KD-EID": KDEID,
    "RKD": RKD,
    "MHGD": MHGD,
    # methods of the other seed papers
    "NST": NST,
    "KA": KnowledgeAdaptation,
    "DFKD": DataFreeKD,
    # the logit methods of RepDistiller, mdistiller and DIST, RepDistiller's relation methods
    "KD": KD,
    "DKD": DKD,
    "DIST": DIST,
    "PKT": PKT,
    "SP": SimilarityPreserving,
    "CC": CorrelationCongruence,
    # contrastive representation distillation (RepDistiller) and knowledge review (ReviewKD)
    "CRD": CRD,
    "ReviewKD": ReviewKD,
    # the survey's instance relationship graph (Knowledge-Distillation-Zoo)
    "IRG": IRG,
}


def get_distiller(key):
    """The distiller class for a TF1 `--Distillation` key."""
    if key not in DISTILLERS:
        raise ValueError(
            f"Unknown Distillation {key!r}; valid keys: {', '.join(DISTILLERS)}.")
    return DISTILLERS[key]

__all__ = ["DISTILLERS", "Distiller", "InitializationDistiller", "get_distiller",
           *(cls.__name__ for cls in DISTILLERS.values())]
