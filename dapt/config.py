"""Typed parameters of each stage, and their validation.

One dataclass per stage; its fields are exactly the keys of the stage notebook's ``parameters``
cell (a test keeps the two equal), so a params file is checked before any kernel starts:
unknown key, wrong type, or value outside its choices → one ``ConfigError`` line naming the key,
the file and the valid options. Choices come from the registries (read when validating), so a new
model or distiller is valid everywhere the moment it is registered.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Optional, Union

from .data import DATASETS
from .distillers import DISTILLERS, DistillerSettings
from .errors import DaptError
from .models import MODELS
from .projectors import CONNECTORS, PROJECTORS

INJECTED = ("run_dir",)  # set by `dapt run` (runs/<study>/<run>), never by a params file


class ConfigError(DaptError):
    """A params mistake; the message names the file, the run, the key and the valid options."""


def param(default: Any, help: str, choices: Union[tuple, Callable[[], list], None] = None) -> Any:
    """A dataclass field with its help text and (optionally) its valid values."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    """What every training stage shares: data, optimisation, bookkeeping."""

    # Files a finished run leaves beside metrics.json; without them (a fresh clone holds only the
    # committed reports, not the git-ignored checkpoints) the run is executed again.
    outputs: ClassVar[tuple[str, ...]] = ("model.pt",)

    dataset: str = param("fashion_mnist", "dataset registry key", DATASETS.names)
    data_root: str = param("data", "folder holding downloaded / user-provided datasets and their caches")
    download: bool = param(False, "let torchvision download a missing dataset")
    train_subset: Optional[int] = param(6000, "stratified subset of the training set (null = all)")
    image_size: int = param(32, "working image size in pixels (images are square)")
    eval_subset: Optional[int] = param(
        None, "per-epoch test evaluation on a stratified subset of this size (null = all); the final one uses all"
    )
    epochs: int = param(5, "training epochs")
    batch_size: int = param(128, "training batch size")
    optimizer: str = param("sgd", "sgd (momentum 0.9) or adamw", ("sgd", "adamw"))
    lr: float = param(0.05, "learning rate (the body's, for init ft)")
    weight_decay: float = param(5.0e-4, "weight decay")
    scheduler: str = param("cosine", "learning-rate schedule", ("none", "cosine", "step"))
    step_size: int = param(30, "scheduler step: epochs between lr drops")
    step_gamma: float = param(0.1, "scheduler step: lr multiplier at each drop")
    augment: bool = param(True, "random pad-crop and horizontal flip on training batches")
    channels_last: bool = param(True, "channels_last memory format (faster convolutions on CPU)")
    seed: int = param(0, "random seed (data subset, init, augmentation)")
    resume: bool = param(False, "continue from the run's last checkpoint if one exists")
    wandb: str = param("disabled", "Weights & Biases logging mode", ("disabled", "offline", "online"))
    run_dir: str = param("runs/interactive/run", "where the run is recorded (set by `dapt run`)")


@dataclass
class TeacherConfig(TrainConfig):
    """Teacher: train fr (scratch), lp (linear probe) or ft (fine-tune) on the task."""

    model: str = param("efficientnet_lite0", "teacher architecture (model registry key)", MODELS.names)
    init: str = param("ft", "fr: scratch, lp: linear probe, ft: fine-tune", ("fr", "lp", "ft"))
    pretrained_weights: Optional[str] = param(
        None, "local ImageNet weights file for lp/ft (null = the packaged / downloadable weights)"
    )
    head_lr_mult: float = param(10.0, "init ft: the new head's lr as a multiple of the body's")
    run_dir: str = param("runs/interactive/teacher", "where the run is recorded (set by `dapt run`)")


def reference(help: str, stage: str) -> Any:
    """A field naming another run of the study (or a run folder); ``dapt run`` orders runs by it."""
    return field(default=None, metadata={"help": help, "choices": None, "ref": stage})


# Distiller knobs live in dapt.distillers.DistillerSettings; their help is here, where params are explained.
DISTILLER_HELP = {
    "w_ce": "weight of cross-entropy on labels (null = the distiller's default)",
    "w_embed": "weight of the feature term: align/uniform, CRD or SRRL's feature MSE (null = default)",
    "w_kd": "weight of Hinton KD on logits (null = default)",
    "w_srrl": "weight of SRRL's logit MSE through the frozen teacher head (null = default)",
    "kd_T": "KD temperature",
    "projector": "align_uniform projector head",
    "proj_dim": "align_uniform projection width",
    "align_alpha": "align_uniform: exponent alpha of the alignment distance",
    "unif_t": "align_uniform: temperature t of the uniformity term",
    "w_align": "align_uniform: weight of alignment inside the feature term",
    "w_unif": "align_uniform: weight of uniformity inside the feature term",
    "crd_dim": "CRD embedding width",
    "crd_k": "CRD negatives per sample (drawn from other classes)",
    "crd_T": "CRD NCE temperature",
    "crd_momentum": "CRD memory-bank momentum",
    "srrl_connector": "SRRL connector from student to teacher width",
}
DISTILLER_CHOICES = {"projector": PROJECTORS.names, "srrl_connector": CONNECTORS.names}


@dataclass
class DistillConfig(TrainConfig, DistillerSettings):
    """Distill: a random-init student learns from a trained teacher with one of the distillers."""

    student: str = param("mobilenet_v2", "student architecture, always from random init", MODELS.names)
    teacher: Optional[str] = reference("teacher run of this study, or a run folder (runs/<study>/<run>)", "teacher")
    distiller: str = param("kd", "none (labels only), kd, crd, srrl or align_uniform", DISTILLERS.names)
    teacher_cache: str = param("on", "on: teacher outputs computed once per (image, view) and reused; off: live",
                               ("on", "off"))
    cache_views: Optional[int] = param(None, "augmented views per image replayed over the epochs (null = epochs)")
    run_dir: str = param("runs/interactive/distill", "where the run is recorded (set by `dapt run`)")


@dataclass
class ReportConfig:
    """Report: the paper-style table and plots over every run of the study."""

    outputs: ClassVar[tuple[str, ...]] = ("notebook.ipynb",)

    run_dir: str = param("runs/interactive/report", "where the report is recorded (set by `dapt run`)")


STAGES: dict[str, type] = {"teacher": TeacherConfig, "distill": DistillConfig, "report": ReportConfig}
# Stages whose run reads the whole study: ordered after every other run, re-run when any of them ran.
COLLECTS_STUDY = ("report",)


def stage_config(stage: str) -> type:
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of: {', '.join(STAGES)}")
    return STAGES[stage]


def param_help(cls: type) -> list[tuple[str, Any, str, str]]:
    """(key, default, help, choices) per field, for ``--help`` and ``dapt list``."""
    rows = []
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices", DISTILLER_CHOICES.get(f.name))
        names = choices() if callable(choices) else choices
        text = f.metadata.get("help", DISTILLER_HELP.get(f.name, ""))
        rows.append((f.name, f.default, text, ", ".join(names) if names else ""))
    return rows


def _type_name(kind: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(kind, str(kind))


def _coerce(value: Any, kind: Any) -> Any:
    """``value`` as ``kind`` or raise ValueError; YAML reads ``1e-3`` as a string, so numbers in strings pass."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0])
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError
    if kind is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError
    if kind is float:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value)
        raise ValueError
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError
    raise TypeError(f"unsupported field type {kind}")


def unknown_key(where: str, key: Any, known: list[str]) -> ConfigError:
    """The error for a key that is not a parameter, with the closest valid key as a hint."""
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(known)}")


def validate(cls: type, values: Mapping[str, Any], where: str = "params") -> Any:
    """Build ``cls`` from ``values``, with one clear ``ConfigError`` for the first problem found."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise unknown_key(where, key, [k for k in known if k not in INJECTED])
    clean = {}
    for key, value in values.items():
        kind = hints[key]
        try:
            clean[key] = _coerce(value, kind)
        except (ValueError, TypeError):
            optional = typing.get_origin(kind) in (Union, types.UnionType)
            base = [a for a in typing.get_args(kind) if a is not type(None)][0] if optional else kind
            wanted = _type_name(base) + (" or null" if optional else "")
            raise ConfigError(f"{where}: {key} must be {wanted}, got {value!r}") from None
        choices = known[key].metadata.get("choices", DISTILLER_CHOICES.get(key))
        names = choices() if callable(choices) else choices
        if names and clean[key] not in names:
            raise ConfigError(f"{where}: {key}: {clean[key]!r} is not one of: {', '.join(names)}")
    try:
        return cls(**clean)
    except (ValueError, DaptError) as err:  # cross-field checks in __post_init__
        raise ConfigError(f"{where}: {err}") from None


def from_namespace(cls: type, namespace: Mapping[str, Any], where: str = "notebook parameters") -> Any:
    """Validate the parameters-cell variables of a notebook (its ``globals()``)."""
    keys = [f.name for f in dataclasses.fields(cls)]
    missing = [k for k in keys if k not in namespace]
    if missing:
        raise ConfigError(f"{where}: the parameters cell lacks {', '.join(missing)}")
    return validate(cls, {k: namespace[k] for k in keys}, where)


def as_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
