"""The from-scratch baseline: the labels only, no teacher."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dapt.distillers.base import Distiller


class LabelsOnly(Distiller):
    """No teacher: cross-entropy on the labels only (the from-scratch baseline)

    ``L = w_ce·CE(z_s, y)``. The base of the teacher distillers, which add their terms to its own.
    """

    name = "none"

    def losses(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor | None,
               t_logits: Tensor | None, index: Tensor | None) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(s_logits, y)} if self.weights["ce"] else {}
