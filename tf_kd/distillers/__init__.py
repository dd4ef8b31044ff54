"""Distillation methods, grouped as in the TF1 repository by kind of knowledge:
response (`response.py`), multi-connection (`multiple.py`), shared
representation (`shared.py`) and relation (`relation.py`); beyond TF1,
knowledge adaptation for dense prediction (`adaptation.py`) and data-free
distillation on a synthesised transfer set (`data_free.py`)."""

from tf_kd.distillers.adaptation import KnowledgeAdaptation
from tf_kd.distillers.base import Baseline, Distiller, InitializationDistiller
from tf_kd.distillers.data_free import DataFreeKD
from tf_kd.distillers.multiple import NST, VID, ABDistillation, AttentionTransfer, FitNet
from tf_kd.distillers.relation import MHGD, RKD
from tf_kd.distillers.response import DML, FactorTransfer, SoftLogits
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
}


def get_distiller(key):
    """The distiller class for a TF1 `--Distillation` key."""
    if key not in DISTILLERS:
        raise ValueError(
            f"Unknown Distillation {key!r}; valid keys: {', '.join(DISTILLERS)}.")
    return DISTILLERS[key]

__all__ = ["DISTILLERS", "Distiller", "InitializationDistiller", "get_distiller",
           *(cls.__name__ for cls in DISTILLERS.values())]
