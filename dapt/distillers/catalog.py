"""The torch-free catalogs of the distillers, projectors and SRRL connectors.

Each entry names the ``"module:attribute"`` of its implementation, imported with torch on first
use; its summary is the first line of that implementation's docstring, read from the source
(``dapt.core.registry``). A distiller is declared once, here, by ``declare_distiller``: its loss
terms with their default weights, the teacher outputs it reads, its warm-up and its knobs. From the
declarations come the settings a params file may set (``settings``: every ``w_<term>`` and knob,
with help and range), what the implementation reads (``base.Distiller``), what the pipeline checks
before any torch is loaded, and the docs. Declaration order is the order ``dapt list`` shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

from dapt.core.errors import DaptError
from dapt.core.fields import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, Choices, Rule
from dapt.core.registry import Registry

PROJECTORS: Registry[Any] = Registry("projector")
for _name in ("mocov2", "simclr", "simclrv2", "linear"):
    PROJECTORS.declare(_name, f"dapt.distillers.projectors:{_name}_projector")

CONNECTORS: Registry[Any] = Registry("srrl connector")
for _name in ("mlp", "mlp2"):
    CONNECTORS.declare(_name, f"dapt.distillers.projectors:{_name}_connector")
del _name


@dataclass(frozen=True)
class Setting:
    """A knob a params file may set: the arguments of ``dapt.core.fields.param``, and its type (that of
    ``default`` unless given). ``knob``: a number worth turning between runs (the explorer shows it)."""

    name: str
    default: Any
    help: str
    rule: Optional[Rule] = None
    choices: Choices = None
    kind: Any = None
    knob: bool = False

    @property
    def type(self) -> Any:
        return self.kind or type(self.default)


@dataclass(frozen=True)
class Term:
    """A loss term a distiller declares first: its default weight and what it measures (the help of
    ``w_<term>``). A later distiller with the same term gives only its default weight."""

    default: float
    help: str


# Knob groups more than one distiller reads; a declaration names the groups it reads (``shared``), and
# each knob's help then says which distillers read it.
SHARED: dict[str, tuple[Setting, ...]] = {
    "temperature": (
        Setting("kd_T", 4.0, "temperature T of the softened logits, times T² in the loss (4: the value of the "
                             "references' CIFAR-100 configs)", rule=POSITIVE, knob=True),),
    "projection": (
        Setting("projector", "mocov2", "projection head on student and teacher features",
                choices=PROJECTORS.names),
        Setting("proj_dim", 128, "projection width (also the width of crd's memory banks)", rule=AT_LEAST_ONE)),
}


@dataclass(frozen=True)
class DistillerDeclaration:
    """What is known of a distiller before any torch is loaded: all its implementation and the pipeline
    read besides its losses."""

    terms: Mapping[str, float]  # loss term -> default weight, e.g. {"ce": 1.0, "kd": 1.0}
    term_help: Mapping[str, str]  # what each term this distiller declares first measures
    reads: tuple[str, ...] = ()  # the teacher outputs it learns from: "logits", and "features" (penultimate)
    needs_index: bool = False  # reads each sample's dataset index (crd's memory banks)
    warmup: float = 0.0  # epochs of distill_warmup when it is null
    knobs: tuple[Setting, ...] = ()  # its own knobs
    shared: tuple[str, ...] = ()  # the SHARED groups it reads

    @property
    def needs_teacher(self) -> bool:
        """It learns from a teacher run's outputs (``teacher`` must be set)."""
        return bool(self.reads)

    @property
    def needs_features(self) -> bool:
        """It reads the teacher's penultimate features, not only its logits: the teacher cache of a
        study stores features only when one of its students needs them."""
        return "features" in self.reads

    def __str__(self) -> str:
        """Its default weights and warm-up, e.g. ``ce 1, kd 1; 1 epoch of warm-up``."""
        weights = ", ".join(f"{term} {weight:g}" for term, weight in self.terms.items())
        return weights + (f"; {self.warmup:g} epoch{'s' if self.warmup != 1 else ''} of warm-up"
                          if self.warmup else "")


DISTILLERS: Registry[Any] = Registry("distiller")
# Set once DistillerSettings is built from the declarations: a later one would lack its settings.
_sealed_by: list[str] = []


def declare_distiller(name: str, target: str, *, terms: Mapping[str, Union[float, Term]],
                      reads: Sequence[str] = (), needs_index: bool = False, warmup: float = 0.0,
                      knobs: Sequence[Setting] = (), shared: Sequence[str] = ()) -> None:
    """Add distiller ``name``, implemented by ``target`` (``"package.module:Class"``, a subclass of
    ``base.Distiller`` whose docstring's first line is its summary): its loss ``terms`` (a ``Term`` where
    the term is new, else its default weight), the teacher outputs it ``reads`` ("logits", "features"),
    whether it needs the samples' indices, its default ``warmup`` in epochs, its own ``knobs`` and the
    ``shared`` knob groups it reads."""
    if _sealed_by:
        raise DaptError(f"distiller {name!r} is declared after {_sealed_by[0]} built the settings from the "
                        "declarations; declare it before importing dapt.distillers.settings")
    unknown = [group for group in shared if group not in SHARED]
    if unknown or not set(reads) <= {"logits", "features"}:
        raise DaptError(f"distiller {name!r}: shared groups are among {', '.join(SHARED)} and reads among "
                        f"logits, features; got shared={list(shared)}, reads={list(reads)}")
    declaration = DistillerDeclaration(
        terms={term: float(getattr(weight, "default", weight)) for term, weight in terms.items()},
        term_help={term: weight.help for term, weight in terms.items() if isinstance(weight, Term)},
        reads=tuple(reads), needs_index=needs_index, warmup=warmup, knobs=tuple(knobs), shared=tuple(shared))
    DISTILLERS.declare(name, target, facts=declaration)


def seal(by: str) -> list[tuple[str, DistillerDeclaration]]:
    """Every declaration, in order, for ``by`` (the module building the settings from them); a later
    ``declare_distiller`` is refused instead of leaving a distiller without its settings."""
    _sealed_by[:] = [by]
    return [(name, DISTILLERS.facts(name)) for name in DISTILLERS.names()]


def needs_teacher(name: str) -> bool:
    """Whether distiller ``name`` learns from a teacher (every one but ``none``)."""
    return DISTILLERS.facts(name).needs_teacher


def needs_features(name: str) -> bool:
    """Whether distiller ``name`` reads the teacher's features, not only its logits."""
    return DISTILLERS.facts(name).needs_features


# --- the distillers ---------------------------------------------------------------------------

declare_distiller("none", "dapt.distillers.none:LabelsOnly",
                  terms={"ce": Term(1.0, "cross-entropy on the labels")})
declare_distiller("kd", "dapt.distillers.kd:KD", reads=("logits",), shared=("temperature",),
                  terms={"ce": 1.0, "kd": Term(1.0, "Hinton KD on the logits")})
declare_distiller(
    "align_uniform", "dapt.distillers.align_uniform:AlignUniform", reads=("logits", "features"),
    shared=("temperature", "projection"),
    terms={"ce": 1.0, "kd": 1.0, "embed": Term(1.0, "alignment and uniformity of the projected features")},
    knobs=(Setting("align_alpha", 2.0, "exponent α of the alignment distance", rule=POSITIVE),
           Setting("unif_t", 2.0, "temperature t of the uniformity term", rule=POSITIVE),
           Setting("w_align", 1.0, "weight of alignment inside the feature term", rule=NON_NEGATIVE),
           Setting("w_unif", 1.0, "weight of uniformity inside the feature term", rule=NON_NEGATIVE)))
declare_distiller(
    "crd", "dapt.distillers.crd:CRD", reads=("logits", "features"), needs_index=True,
    shared=("temperature", "projection"),
    terms={"ce": 1.0, "kd": 1.0, "embed": Term(1.0, "the NCE of the projected features against the memory banks")},
    knobs=(Setting("crd_k", 4096, "negatives per sample, drawn from other classes", rule=AT_LEAST_ONE),
           Setting("crd_T", 0.07, "NCE temperature", rule=POSITIVE),
           Setting("crd_momentum", 0.5, "memory-bank momentum (share of the old row kept)", rule=FRACTION)))
declare_distiller(
    "srrl", "dapt.distillers.srrl:SRRL", reads=("logits", "features"), warmup=1.0, shared=("temperature",),
    terms={"ce": 1.0, "kd": 0.0,
           "embed": Term(1.0, "the MSE of the connected student features to the teacher's"),
           "srrl": Term(1.0, "the MSE between the teacher head's logits on the connected student features "
                             "and the teacher's")},
    knobs=(Setting("srrl_connector", "mlp2", "connector from student to teacher feature width",
                   choices=CONNECTORS.names),
           Setting("srrl_normalise", True, "divide the logit MSE by the teacher's mean squared logit on the "
                                           "batch, so its weight does not depend on the teacher's logit scale "
                                           "(false: the reference's plain MSE)")))
declare_distiller(
    "dkd", "dapt.distillers.dkd:DKD", reads=("logits",), warmup=1.0, shared=("temperature",),
    terms={"ce": 1.0,
           "tckd": Term(1.0, "TCKD (α), the KL of the binary target / non-target probabilities (reference: 1)"),
           "nckd": Term(8.0, "NCKD (β), the KL among the non-target classes (reference: 8 on CIFAR-100, 0.5 "
                             "on ImageNet)")})
declare_distiller(
    "dist", "dapt.distillers.dist:DIST", reads=("logits",), shared=("temperature",),
    terms={"ce": 1.0,
           "inter": Term(2.0, "the inter-class relation (β), 1 − Pearson correlation per sample (reference: 2)"),
           "intra": Term(2.0, "the intra-class relation (γ), 1 − Pearson correlation per class over the batch "
                              "(reference: 2)")})
