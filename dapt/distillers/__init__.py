"""Distillers: the student's training loss, from plain cross-entropy to learning from a teacher.

This package's top is torch-free, for the pipeline: the catalogs ``DISTILLERS``, ``PROJECTORS``
and ``CONNECTORS`` (``catalog``) and every knob a params file may set (``settings``). The
implementations import torch: ``base`` (the contract: a distiller declares its loss terms and
their default weights and returns its unweighted losses; the base weighs, ramps and sums them;
``build_distiller``), ``losses`` (the plain loss functions), ``projectors`` (projection heads and
SRRL connectors) and one module per distiller: ``none``, ``kd``, ``align_uniform``, ``crd``,
``srrl``, ``dkd``, ``dist``. Adding a distiller is one new module and one ``DISTILLERS.declare`` in ``catalog``.

Imports ``core`` only.
"""
from __future__ import annotations

from dapt.distillers.catalog import (CONNECTORS, DISTILLERS, PROJECTORS, DistillerFacts, needs_features,
                                     needs_teacher)
from dapt.distillers.settings import (AlignUniformSettings, CRDSettings, DistillerSettings, LossSettings,
                                      ProjectionSettings, SRRLSettings)

__all__ = [
    "DISTILLERS", "PROJECTORS", "CONNECTORS", "DistillerFacts", "DistillerSettings", "LossSettings",
    "ProjectionSettings", "AlignUniformSettings", "CRDSettings", "SRRLSettings", "needs_teacher",
    "needs_features",
]
