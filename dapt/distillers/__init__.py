"""Distillers: the student's training loss, from plain cross-entropy to learning from a teacher.

One module per job: ``losses`` (the plain loss functions), ``projectors`` (projection heads and
SRRL connectors), ``base`` (weights, the ``Distiller`` base = ``none``, ``build_distiller``) and
one module per distiller with its own settings: ``kd``, ``align_uniform``, ``crd``, ``srrl``.
Importing this package registers them all in ``DISTILLERS``.
"""
from __future__ import annotations

from dataclasses import dataclass

from dapt.core.fields import check_ranges
from dapt.distillers.base import DISTILLERS, TERMS, Distiller, LossSettings, build_distiller
from dapt.distillers.projectors import CONNECTORS, PROJECTORS, ProjectionSettings, build_projector
# Registration order is the order ``dapt list`` shows: none (base), kd, align_uniform, crd, srrl.
from dapt.distillers.kd import KD
from dapt.distillers.align_uniform import AlignUniform, AlignUniformSettings
from dapt.distillers.crd import CRD, CRDSettings
from dapt.distillers.srrl import SRRL, SRRLSettings

__all__ = [
    "DISTILLERS", "PROJECTORS", "CONNECTORS", "TERMS", "Distiller", "KD", "AlignUniform", "CRD",
    "SRRL", "DistillerSettings", "LossSettings", "ProjectionSettings", "AlignUniformSettings",
    "CRDSettings", "SRRLSettings", "build_distiller", "build_projector", "needs_teacher",
]


# Bases in reverse: a dataclass lists the fields of its last base first, so the fields read
# w_ce .. kd_T, projector, proj_dim, align_uniform's, crd's, srrl's.
@dataclass
class DistillerSettings(SRRLSettings, CRDSettings, AlignUniformSettings, ProjectionSettings,
                        LossSettings):
    """Every distiller knob a params file may set, with its default; a run's config inherits it.

    Constructing one checks every value against its field's range and names (``DaptError``).
    """

    def __post_init__(self) -> None:
        check_ranges(self)
        PROJECTORS.get(self.projector)
        CONNECTORS.get(self.srrl_connector)


def needs_teacher(name: str) -> bool:
    """Whether distiller ``name`` learns from a teacher (every one but ``none``)."""
    return DISTILLERS.get(name).needs_teacher
