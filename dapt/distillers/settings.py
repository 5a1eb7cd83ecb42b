"""Every distiller knob a params file may set, as torch-free dataclasses a run's config inherits.

The loss weights ``w_<term>`` and the KD temperature are read by every distiller; the other
groups by the distillers their help names. Each field carries its help, choices and range
(``dapt.core.fields.param``); the implementations read them by attribute from the run's config.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dapt.core.fields import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, check_ranges, param
from dapt.distillers.catalog import CONNECTORS, PROJECTORS

_DEFAULT = " (null = the distiller's default)"


@dataclass
class LossSettings:
    """Overrides of the distillers' loss-term weights, and the KD temperature.

    A distiller reads ``w_<term>`` for each term it declares; null keeps its default weight.
    """

    w_ce: Optional[float] = param(None, "every distiller: weight of cross-entropy on the labels"
                                  + _DEFAULT, rule=NON_NEGATIVE)
    w_embed: Optional[float] = param(None, "align_uniform, crd, srrl: weight of the feature term "
                                     "(align/uniform, CRD's NCE, SRRL's feature MSE)" + _DEFAULT,
                                     rule=NON_NEGATIVE)
    w_kd: Optional[float] = param(None, "kd, align_uniform, crd, srrl: weight of Hinton KD on the "
                                  "logits" + _DEFAULT, rule=NON_NEGATIVE)
    w_srrl: Optional[float] = param(None, "srrl: weight of the MSE between the teacher head's "
                                    "logits on the connected student features and the teacher's"
                                    + _DEFAULT, rule=NON_NEGATIVE)
    w_tckd: Optional[float] = param(None, "dkd: weight α of TCKD, the KL of the binary target / "
                                    "non-target probabilities (reference: 1)" + _DEFAULT,
                                    rule=NON_NEGATIVE)
    w_nckd: Optional[float] = param(None, "dkd: weight β of NCKD, the KL among the non-target "
                                    "classes (reference: 8 on CIFAR-100, 0.5 on ImageNet)" + _DEFAULT,
                                    rule=NON_NEGATIVE)
    w_inter: Optional[float] = param(None, "dist: weight β of the inter-class relation, 1 − Pearson "
                                     "correlation per sample (reference: 2)" + _DEFAULT,
                                     rule=NON_NEGATIVE)
    w_intra: Optional[float] = param(None, "dist: weight γ of the intra-class relation, 1 − Pearson "
                                     "correlation per class over the batch (reference: 2)" + _DEFAULT,
                                     rule=NON_NEGATIVE)
    kd_T: float = param(4.0, "temperature T of the softened logits, times T² in the loss: Hinton KD "
                        "(every distiller whose w_kd > 0: kd, align_uniform, crd by default), dkd's "
                        "TCKD and NCKD, dist's inter and intra (4: the Farhat & Chen reference's KD "
                        "and DKD's and DIST's CIFAR-100 configs)", rule=POSITIVE)
    distill_warmup: Optional[float] = param(
        None, "every distiller but none: epochs over which the teacher terms' weights (every w_<term> "
              "but w_ce) ramp linearly from 0 to their value, per training step; w_ce is never "
              "ramped (0 = no warm-up; null = the distiller's default: 1 for srrl and dkd, 0 for the "
              "others)",
        rule=NON_NEGATIVE)


@dataclass
class ProjectionSettings:
    """The projection heads shared by align_uniform and crd (one 128-d projection for both,
    as in the reference)."""

    projector: str = param(
        "mocov2", "align_uniform and crd: projection head on student and teacher features",
        choices=PROJECTORS.names)
    proj_dim: int = param(
        128, "align_uniform and crd: projection width (also the width of crd's memory banks)",
        rule=AT_LEAST_ONE)


@dataclass
class AlignUniformSettings:
    """The knobs of the align_uniform feature term (reference ``kd_losses/align_uniform.py``)."""

    align_alpha: float = param(2.0, "align_uniform: exponent α of the alignment distance",
                               rule=POSITIVE)
    unif_t: float = param(2.0, "align_uniform: temperature t of the uniformity term",
                          rule=POSITIVE)
    w_align: float = param(1.0, "align_uniform: weight of alignment inside the feature term",
                           rule=NON_NEGATIVE)
    w_unif: float = param(1.0, "align_uniform: weight of uniformity inside the feature term",
                          rule=NON_NEGATIVE)


@dataclass
class CRDSettings:
    """The knobs of CRD's NCE and memory banks (reference ``--nce_k``, ``--nce_t``, ``--nce_m``)."""

    crd_k: int = param(4096, "crd: negatives per sample, drawn from other classes",
                       rule=AT_LEAST_ONE)
    crd_T: float = param(0.07, "crd: NCE temperature", rule=POSITIVE)
    crd_momentum: float = param(0.5, "crd: memory-bank momentum (share of the old row kept)",
                                rule=FRACTION)


@dataclass
class SRRLSettings:
    """The SRRL connector (reference ``distill.py``, ``--connector``)."""

    srrl_connector: str = param("mlp2", "srrl: connector from student to teacher feature width",
                                choices=CONNECTORS.names)
    srrl_normalise: bool = param(True, "srrl: divide the logit MSE by the teacher's mean squared "
                                       "logit on the batch, so its weight does not depend on the "
                                       "teacher's logit scale (false: the reference's plain MSE)")


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
        PROJECTORS.check(self.projector)
        CONNECTORS.check(self.srrl_connector)
