"""Knowledge distillation on logits (Hinton, Vinyals & Dean 2015)."""
from __future__ import annotations

from dapt.distillers.base import DISTILLERS, Distiller


@DISTILLERS.register("kd")
class KD(Distiller):
    """Hinton et al. 2015: CE + T²·KL to the teacher's softened logits

    ``L = w_ce·CE(z_s, y) + w_kd·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))`` with T = ``kd_T``
    (4 by default, as the reference). G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge
    in a Neural Network", NeurIPS Deep Learning Workshop 2015.
    """

    name = "kd"
    default_weights = {"ce": 1.0, "embed": 0.0, "kd": 1.0, "srrl": 0.0}
    needs_teacher = True
    terms = ("ce", "kd")
