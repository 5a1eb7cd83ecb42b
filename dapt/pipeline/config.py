"""Typed parameters of each stage, and their validation.

One dataclass per stage; its fields are exactly the keys of the stage notebook's ``parameters``
cell (``dapt docs`` writes the cell from them), so a params file is checked before any kernel starts:
unknown key, wrong type, a value outside its choices or its range → one ``ConfigError`` line
naming the key, the file and what is valid. Each field carries its help, choices and range
(``dapt.core.fields.param``); the distillers' knobs and loss weights are declared with each distiller
(``dapt.distillers.catalog``), made fields by ``dapt.distillers.settings`` and reach ``DistillConfig``
by inheritance, so every parameter has exactly one home. Torch-free: names, fields and facts come
from the catalogs of ``data``, ``models`` and ``distillers``.
"""
from __future__ import annotations

import dataclasses
import difflib
import reprlib
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Optional, Union

import yaml

from dapt.core.claims import check_decision
from dapt.core.devices import check_placement
from dapt.core.errors import DaptError
from dapt.core.fields import (AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, check_ranges, choices_of, help_of, param,
                              reference, study_wide)
from dapt.core.hub import check_weights_reachable
from dapt.core.tracking import TrackingSettings
from dapt.data import DATASETS, SYNSET_SIZES, check_folder
from dapt.distillers import DISTILLERS, DistillerSettings, needs_teacher
from dapt.models import MODELS, check_image_size

DEVICE_HELP = ("where the run computes: auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps; "
               "bookkeeping: another device gives the same run up to float rounding")
AMP_CHOICES = ("off", "bf16", "fp16")
AMP_HELP = ("mixed precision of training: off (float32), bf16 (autocast to bfloat16; CPU and CUDA) or fp16 "
            "(autocast to float16 with loss scaling; CUDA and mps only)")
# set by `dapt run`, never by a params file: the run's folder (runs/<study>/<run>), for a distill run
# whether its teacher's cache stores features (another student of that teacher in the study reads them), and
# for a report the study's own description and decision rule (its params file's `description`, which the
# report opens with, and `decision`, which its answers evaluate)
INJECTED = ("run_dir", "cache_features", "study_description", "study_decision")
TEACHER_AMP_CHOICES = ("auto", "off", "bf16", "fp16")


class ConfigError(DaptError):
    """A params mistake; the message names the file, the run, the key and the valid options."""


@dataclass
class TrainConfig(TrackingSettings):
    """What every training stage shares: data, optimisation, bookkeeping."""

    # Files a finished run leaves beside metrics.json; without them (a fresh clone holds only the
    # committed reports, not the git-ignored checkpoints) the run is executed again.
    outputs: ClassVar[tuple[str, ...]] = ("model.pt",)

    dataset: str = param("fashion_mnist", "dataset registry key (`dapt list`)", section="data", choices=DATASETS.names)
    folder: Optional[str] = param(None, "dataset folder: your own images, PATH/{train,test}/<class>/<image> (JPEG or "
                                        "PNG; val/ too, optionally: the validation set), PATH relative to the "
                                        "repository or absolute (docs/datasets.md); null for the other datasets")
    data_root: str = param("data", "folder holding downloaded / user-provided datasets and their caches")
    download: bool = param(False, "let torchvision download a missing dataset")
    train_subset: Optional[int] = param(6000, "stratified subset of the training set (null = all)", rule=AT_LEAST_ONE)
    image_size: int = param(32, "working image size in pixels (images are square)", rule=AT_LEAST_ONE)
    eval_subset: Union[int, str, None] = param(
        "auto", "validation images, which the per-epoch curves, best.pt and best_val_acc read; the test set is read "
                "once, by the last epoch's model. Drawn per class, stratified and seeded by the subset seed, from "
                "the training images outside train_subset (the last of each class's order; generator holdout "
                "takes the first): this many; null = all of them; auto = min(those, max(1000, training images)). "
                "When train_subset leaves none outside, a stratified split of the training images, which then "
                "train without them: this many; auto and null = 10%. Why auto: images outside the subset cost "
                "the training nothing and keep the test set unread until the end; 1,000 keep an accuracy's "
                "standard error near 1.3 points, and no more than the training images keep evaluating under "
                "about a third of an epoch (a forward pass against forward + backward)", section="evaluation")
    eval_every: int = param(1, "evaluate after every N-th epoch (and always after the last); best.pt and "
                               "best_val_acc only consider evaluated epochs", rule=AT_LEAST_ONE)
    epochs: int = param(4, "training epochs", rule=AT_LEAST_ONE, knob=True, section="optimisation")
    batch_size: int = param(128, "training batch size", rule=AT_LEAST_ONE)
    optimizer: str = param("adamw", "adamw, or sgd (momentum 0.9)", choices=("sgd", "adamw"))
    lr: float = param(2.0e-3, "learning rate", rule=POSITIVE, knob=True)
    weight_decay: float = param(0.05, "weight decay (0.05 suits AdamW's decoupled decay; with sgd the reference "
                                      "code's 5e-4)", rule=NON_NEGATIVE)
    scheduler: str = param("cosine", "learning-rate schedule, stepped per batch", choices=("none", "cosine", "step"))
    step_size: int = param(30, "scheduler step: epochs between lr drops", rule=AT_LEAST_ONE)
    step_gamma: float = param(0.1, "scheduler step: lr multiplier at each drop", rule=POSITIVE)
    augment: bool = param(True, "random pad-crop and horizontal flip on training batches")
    precise_bn: Optional[int] = param(
        2048, "before each evaluation, BatchNorm statistics are re-estimated on this many augmented training "
              "images (precise BN); null keeps the running averages, which lag fast-moving weights", rule=AT_LEAST_ONE)
    channels_last: bool = param(True, "channels_last memory format (faster convolutions on CPU)")
    device: str = param("auto", DEVICE_HELP, section="system")
    amp: str = param("off", AMP_HELP, choices=AMP_CHOICES)
    compile: bool = param(False, "torch.compile the model's body (TorchInductor: needs a C++ compiler on the CPU, "
                                 "triton on CUDA); the first steps pay for the compilation")
    seed: int = param(0, "random seed (init, augmentation, order; the data subset too unless subset_seed is set)",
                      section="seeds and bookkeeping")
    subset_seed: Optional[int] = param(
        None, "seed of the stratified training subset (null = seed); fix it (e.g. 0) to keep one subset across a "
              "seed grid, so seeds vary init, augmentation and order, and every student sees its teacher's images",
        rule=NON_NEGATIVE)
    resume: bool = param(False, "continue from the run's last checkpoint if one exists")
    checkpoint_every: Optional[int] = param(
        None, "write last.pt every N training steps as well as at each epoch end; null = epoch ends only "
              "(a kill then costs at most N steps instead of an epoch)", rule=AT_LEAST_ONE)
    run_dir: str = param("runs/interactive/run", "where the run is recorded (set by `dapt run`)")

    def __post_init__(self) -> None:
        check_ranges(self)
        check_folder(self.dataset, self.folder)
        check_placement(self.device, self.amp, self.compile)
        subset = self.eval_subset
        if not (subset is None or subset == "auto" or (isinstance(subset, int) and not isinstance(subset, bool)
                                                        and subset >= 1)):
            raise DaptError(f"eval_subset={subset!r} must be a whole number of validation images (at least 1), auto "
                            f"(scaled with the training set) or null (every training image outside train_subset)")


@dataclass
class TeacherConfig(TrainConfig):
    """Teacher: train fr (scratch), lp (linear probe) or ft (fine-tune) on the task."""

    model: str = param("efficientnet_lite0", "teacher architecture (`dapt list`)", choices=MODELS.names,
                       section="teacher model")
    init: str = param("ft", "fr: from scratch, lp: linear probe on the ImageNet body, ft: fine-tune it",
                      choices=("fr", "lp", "ft"))
    pretrained_weights: Optional[str] = param(
        None, "local ImageNet weights file for lp/ft (null = the packaged / downloadable weights)")
    head_lr_mult: float = param(10.0, "init ft: the new head's lr as a multiple of the body's", rule=POSITIVE)
    epochs: int = param(3, "training epochs", rule=AT_LEAST_ONE, knob=True, section="optimisation")
    lr: float = param(1.0e-3, "learning rate (the body's, for init ft)", rule=POSITIVE, knob=True)
    run_dir: str = param("runs/interactive/teacher", "where the run is recorded (set by `dapt run`)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_image_size(self.model, self.image_size)


@dataclass
class DistillConfig(DistillerSettings, TrainConfig):
    """Distill: a random-init student learns from a trained teacher with one of the distillers."""

    student: str = param("mobilenet_v2", "student architecture, always from random init", choices=MODELS.names,
                         section="student, teacher, distiller")
    teacher: Optional[str] = reference("teacher run of this study, or a run folder (runs/<study>/<run>)", "teacher")
    distiller: str = param("kd", "the student's training loss, with or without a teacher (`dapt list`; its loss "
                                 "weights and knobs above)", choices=DISTILLERS.names)
    teacher_cache: str = param("on", "on: the teacher's outputs on each (image, view) computed once, stored under "
                                     "the teacher run's cache/ and shared by every student of it; off: live at "
                                     "every step (the same views and precision)", choices=("on", "off"))
    cache_views: Optional[int] = param(
        None, "augmented views per image: null = epochs (a fresh view every epoch, as the live teacher and the "
              "teacher stage see); fewer replays them, epoch e reading view e mod cache_views, for a smaller "
              "cache at an accuracy cost (docs/performance.md, 'How many views')", rule=AT_LEAST_ONE)
    teacher_amp: str = param(
        "auto", "precision of the frozen teacher's forward passes for the training targets, cached or live: auto "
                "(bf16 where the device computes it natively: CUDA with bf16, CPUs with AVX512-BF16 or AMX; fp16 on "
                "older CUDA and mps; else off), off (float32), bf16 or fp16; test-set outputs stay float32",
        choices=TEACHER_AMP_CHOICES)
    cache_features: bool = param(False, "set by `dapt run`: the teacher cache also stores the teacher's features, "
                                        "because another student of this teacher in the study reads them")
    synthetic: Optional[str] = reference(
        "generate run of this study, or a run folder: a class-balanced sample of its images joins the real "
        "training images", "generate", section="real + synthetic images")
    synset_size: Optional[str] = param(
        None, "synthetic images per real training image, per class: 1x, 2x, 5x or 10x (null = 1x when synthetic "
              "is set); the generate run needs images_per_class of at least the factor times the real images of "
              "the largest class", choices=tuple(SYNSET_SIZES))
    diffaug: str = param("none", "DiffAugment (Zhao & Bilen 2021) after crop/flip, on what student and teacher see: "
                                 "none, S (one of its six transforms per image) or M (all six)",
                         choices=("none", "S", "M"))
    run_dir: str = param("runs/interactive/distill", "where the run is recorded (set by `dapt run`)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_image_size(self.student, self.image_size)
        if self.synset_size is not None and self.synthetic is None:
            raise DaptError(f"synset_size {self.synset_size} needs synthetic images: set synthetic to a generate "
                            f"run of the study (or its folder), or remove synset_size")
        if self.teacher_amp == "fp16" and self.device == "cpu":
            raise DaptError("teacher_amp: fp16 on the CPU has no native half-precision kernels and runs many times "
                            "slower than float32; use teacher_amp: auto or bf16 on the CPU, or off")
        if self.teacher is None and needs_teacher(self.distiller):
            raise DaptError(f"distiller {self.distiller!r} needs a teacher: set teacher to a teacher run of the "
                            f"study, or to a trained run folder such as runs/fashion_quick/lite2_ft (`make study` "
                            f"trains it), or use distiller none")


@dataclass
class GenerateConfig(TrackingSettings):
    """Generate: a synthetic image set per class, by a DDPM trained here, by Stable Diffusion, or (holdout) real
    training images outside the subset, as an ideal generator would draw them."""

    outputs: ClassVar[tuple[str, ...]] = ("images/index.json",)

    dataset: str = param("fashion_mnist", "dataset registry key (`dapt list`): its class names make the prompts, "
                                          "its training images train the ddpm", choices=DATASETS.names,
                         section="data and the set")
    folder: Optional[str] = param(None, "dataset folder: your own images, PATH/{train,test}/<class>/<image> (JPEG or "
                                        "PNG; val/ too, optionally: the validation set), PATH relative to the "
                                        "repository or absolute (docs/datasets.md); null for the other datasets")
    data_root: str = param("data", "folder holding downloaded / user-provided datasets and their caches")
    download: bool = param(False, "let torchvision download a missing dataset")
    train_subset: Optional[int] = param(6000, "ddpm: stratified subset of the training set it learns from; holdout: the "
                                              "subset whose images it leaves out (null = all)",
                                        rule=AT_LEAST_ONE)
    image_size: int = param(32, "size of the generated images in pixels (square)", rule=AT_LEAST_ONE)
    seed: int = param(0, "random seed: the ddpm's training, and every image's own seed (from seed, class, "
                         "number); with ddpm and holdout also the train_subset's draw")
    generator: str = param("ddpm", "ddpm: a small class-conditional diffusion model trained here on the dataset "
                                   "(offline, CPU); stable_diffusion: text-to-image from `model`; holdout: an ideal "
                                   "generator, real training images outside the train_subset this run draws with its "
                                   "seed (a distill run on them must hold that subset: the same train_subset and "
                                   "subset_seed, or seed, equal to this seed; it refuses an overlap)",
                           choices=("ddpm", "stable_diffusion", "holdout"))
    images_per_class: int = param(600, "images per class; a re-run keeps the ones it has and adds the missing ones",
                                  rule=AT_LEAST_ONE)
    batch_size: Optional[int] = param(None, "images generated per batch (null: 250 for ddpm, 4 for stable_diffusion, "
                                            "whose 512-px batches take GBs); set on the run: a study's defaults "
                                            "batch_size is the training batch and does not apply here",
                                      rule=AT_LEAST_ONE, study_wide=False)
    teacher: Optional[str] = reference("teacher run of this study, or a run folder: classifies the generated set "
                                       "(null = not measured)", "teacher")
    # stable_diffusion
    model: str = param("CompVis/stable-diffusion-v1-4", "stable_diffusion: Hugging Face hub id or a local folder "
                                                        "holding model_index.json", section="stable_diffusion")
    prompt_template: str = param("a photo of a {name}", "stable_diffusion: prompt per class; {name} is the class "
                                                        "name of this dataset")
    negative_prompt: Optional[str] = param(None, "stable_diffusion: what the images should not show (null = none)")
    guidance_scale: float = param(7.5, "stable_diffusion: classifier-free guidance scale", rule=NON_NEGATIVE)
    num_inference_steps: int = param(50, "stable_diffusion: denoising steps", rule=AT_LEAST_ONE)
    # ddpm
    ddpm_steps: int = param(800, "ddpm: training steps (batches)", rule=AT_LEAST_ONE, section="ddpm")
    ddpm_batch_size: int = param(64, "ddpm: training batch size", rule=AT_LEAST_ONE)
    ddpm_lr: float = param(2.0e-3, "ddpm: AdamW learning rate (linear warm-up over the first 5% of steps)",
                           rule=POSITIVE)
    ddpm_channels: int = param(32, "ddpm: UNet width at its first level (then 2x, 2x)", rule=AT_LEAST_ONE)
    ddpm_patch: int = param(2, "ddpm: pixel blocks folded into channels before the UNet (2: a 32-px image enters "
                               "at 16 px, ~4x cheaper; 1: none)", rule=AT_LEAST_ONE)
    ddpm_timesteps: int = param(1000, "ddpm: diffusion steps T of training (cosine schedule)", rule=AT_LEAST_ONE)
    ddpm_label_drop: float = param(0.1, "ddpm: probability a training label is replaced by the null class "
                                        "(classifier-free guidance)", rule=FRACTION)
    ddpm_guidance: float = param(3.0, "ddpm: classifier-free guidance scale w (1 = plain conditional sampling)",
                                 rule=NON_NEGATIVE)
    ddpm_sample_steps: int = param(6, "ddpm: DDIM sampling steps", rule=AT_LEAST_ONE)
    device: str = param("auto", DEVICE_HELP, section="system")
    amp: str = param("off", "ddpm: mixed precision of its training (off, bf16, fp16 as for training stages); "
                            "stable_diffusion: the pipeline's weights in float32 (off), bfloat16 or float16",
                     choices=AMP_CHOICES)
    run_dir: str = param("runs/interactive/generate", "where the run is recorded (set by `dapt run`)")

    def __post_init__(self) -> None:
        check_ranges(self)
        check_folder(self.dataset, self.folder)
        check_placement(self.device, self.amp)
        try:
            self.prompt_template.format(name="x")
        except (KeyError, IndexError, ValueError):
            raise DaptError(f"prompt_template {self.prompt_template!r} may only use {{name}} (the class name), "
                            f"e.g. 'a photo of a {{name}}'") from None
        if self.generator == "ddpm":
            fold = 4 * self.ddpm_patch  # the patch, then two halvings in the UNet
            if self.image_size % fold:
                raise DaptError(f"generator ddpm with ddpm_patch {self.ddpm_patch} needs an image_size divisible by "
                                f"{fold}, got {self.image_size}; use {max(fold, self.image_size // fold * fold)}")
            if self.ddpm_patch > 1 and self.image_size // self.ddpm_patch < 4:
                raise DaptError(f"ddpm_patch {self.ddpm_patch} leaves the UNet images smaller than 4 px at "
                                f"image_size {self.image_size}; lower ddpm_patch")
        elif self.generator == "stable_diffusion":
            check_weights_reachable(self.model)


@dataclass
class ReportConfig(TrackingSettings):
    """Report: the paper-style table and plots over every run of the study."""

    outputs: ClassVar[tuple[str, ...]] = ("notebook.ipynb",)

    paper_epochs: int = param(250, "the paper's training epochs: the budget the report holds the students' against",
                              rule=AT_LEAST_ONE, section="the report")
    short_budget_epochs: int = param(50, "students trained fewer epochs than this are on a short budget, which "
                                         "ranks methods at that budget rather than at convergence", rule=AT_LEAST_ONE)
    study_description: str = param("", "set by `dapt run`: the study's description (its params file's "
                                       "`description`: the question and the rule that decides it), which the "
                                       "report opens with; empty for a report run by hand")
    study_decision: Optional[dict] = param(
        None, "set by `dapt run`: the study's decision rule (its params file's `decision`: claim and within_pt), "
              "whose outcome the report states under its answers; null for a study without one")
    run_dir: str = param("runs/interactive/report", "where the report is recorded (set by `dapt run`)")

    def __post_init__(self) -> None:
        check_ranges(self)
        check_decision(self.study_decision)


STAGES: dict[str, type] = {"teacher": TeacherConfig, "distill": DistillConfig, "generate": GenerateConfig,
                           "report": ReportConfig}
# Stages whose run reads the whole study: ordered after every other run, re-run when any of them ran.
COLLECTS_STUDY = ("report",)


def stage_config(stage: str) -> type:
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of: {', '.join(STAGES)}")
    return STAGES[stage]


def param_help(cls: type) -> list[tuple[str, Any, str, str]]:
    """(key, default, help, choices) per field, for ``dapt params`` and the widgets."""
    return [(f.name, f.default, help_of(f), ", ".join(choices_of(f) or ())) for f in dataclasses.fields(cls)]


def yaml_value(value: Any) -> str:
    """``value`` as a params file writes it, on one line: null, true, 0.002, 1.0e-05, auto, 'off' (YAML reads a
    bare off as false), '' (the empty text); "(required)" for a field without a default."""
    if value is dataclasses.MISSING:
        return "(required)"
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 30).removesuffix("\n").removesuffix("\n...")


def from_defaults(cls: type, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a study's ``defaults`` that a run of stage ``cls`` takes: the keys it has, except the
    ones it means differently (``study_wide=False``: a generate run's ``batch_size`` counts sampled images)."""
    taken = {f.name for f in dataclasses.fields(cls) if study_wide(f)}
    return {k: v for k, v in defaults.items() if k in taken}


def _type_name(kind: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true/false", str: "a string", dict: "a mapping"}
    return names.get(kind, str(kind))


def _coerce(value: Any, kind: Any) -> Any:
    """``value`` as ``kind`` or raise ValueError; YAML reads ``1e-3`` as a string, so numbers in strings pass."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        for arg in (a for a in typing.get_args(kind) if a is not type(None)):  # the first type that fits
            try:
                return _coerce(value, arg)
            except ValueError:
                pass
        raise ValueError
    if isinstance(value, bool) and kind is not bool:
        raise ValueError
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int):
        return value
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind is float and isinstance(value, (int, float, str)):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    if kind is dict and isinstance(value, dict):  # a structured parameter (a report's study_decision)
        return value
    raise ValueError


def _short(value: Any) -> str:
    """``repr(value)`` cut to a line: YAML aliases can make a value of a million items (``study.MAX_VALUES``) out
    of a few lines."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = 80
    short.maxlist = short.maxdict = 6
    short.maxlevel = 2
    text = short.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def unknown_key(where: str, key: Any, known: list[str], stage: str | None = None) -> ConfigError:
    """The error for a key that is not a parameter: the closest valid key as a hint, else where the valid keys
    are listed (``dapt params STAGE``; every stage's when the key is not a run's, e.g. in defaults), since a stage
    has dozens of keys, too many for one line."""
    close = difflib.get_close_matches(str(key), known, n=1)
    if close:
        return ConfigError(f"{where}: unknown key {key!r} (did you mean {close[0]!r}?)")
    if stage:
        return ConfigError(f"{where}: unknown key {key!r}: a {stage} run has no such key; `dapt params {stage}` lists "
                           f"its keys")
    return ConfigError(f"{where}: unknown key {key!r}: no stage takes it from a params file; `dapt params` lists each "
                       f"stage's keys")


# Python's spellings of YAML's null, true and false, in any case: YAML reads `subset_seed: None` as the text
# 'None' (and a quoted 'False' as text), which a key that takes null (or true/false) then refuses, or keeps as text.
PYTHON_SPELLINGS = {"none": None, "true": True, "false": False}


def python_spelling(value: Any, kind: Any) -> str | None:
    """YAML's spelling of the null, true or false that ``value`` spells as Python does ('None', 'False'), when a
    key of type ``kind`` takes it; None otherwise."""
    if not isinstance(value, str) or value.lower() not in PYTHON_SPELLINGS:
        return None
    meant = PYTHON_SPELLINGS[value.lower()]
    takes = typing.get_args(kind) or (kind,)
    return yaml_value(meant) if (type(None) if meant is None else bool) in takes else None


def validate(cls: type, values: Mapping[str, Any], where: str = "params") -> Any:
    """Build ``cls`` from ``values``, with one clear ``ConfigError`` for the first problem found."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    stage = next((name for name, stage_cls in STAGES.items() if stage_cls is cls), None)
    for key in values:
        if key not in known:
            raise unknown_key(where, key, [k for k in known if k not in INJECTED], stage)
    clean = {}
    for key, value in values.items():
        kind = hints[key]
        names = choices_of(known[key])
        meant = python_spelling(value, kind)
        if meant and value not in (names or ()):
            what = "the empty value" if meant == "null" else "the boolean"
            raise ConfigError(f"{where}: {key}: {value!r} is the string {value}; YAML spells {what} {meant}")
        if isinstance(value, bool) and names and ("on" if value else "off") in names:
            value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as true/false
        try:
            clean[key] = _coerce(value, kind)
        except (ValueError, TypeError):
            optional = typing.get_origin(kind) in (Union, types.UnionType)
            bases = [a for a in typing.get_args(kind) if a is not type(None)] if optional else [kind]
            wanted = " or ".join(map(_type_name, bases)) + (" or null" if optional else "")
            raise ConfigError(f"{where}: {key} must be {wanted}, got {_short(value)}") from None
        if names and clean[key] is not None and clean[key] not in names:
            raise ConfigError(f"{where}: {key}: {clean[key]!r} is not one of: {', '.join(names)}")
    try:
        return cls(**clean)
    except DaptError as err:  # ranges and cross-field checks in __post_init__
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
