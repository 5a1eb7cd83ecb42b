"""``dapt run FILE --timing``: time one epoch of each configuration of a study with the real stage code, and
project the study's wall time, before any run starts. Run as ``python -m dapt.stages.timing FILE`` (the
command line starts it so: the ``cli`` may not import the training code, and the timing then loads torch
in a process of its own); nothing is written under ``runs/``.

For each configuration (``dapt.pipeline.projection``) its first run is trained by ``train_teacher`` or
``distill`` with the study's resolved params, in a temporary folder, on a sample of its images: the training
images of ``warmup + steps`` batches (drawn with a fixed seed), 256 validation and 256 test images. The
record (``StepClock``) times each optimizer step after ``warmup`` ones (first-step allocations, lazy
initialisations) and stops the run after ``steps`` more, or once ``limit`` seconds have passed, before any
evaluation. s/epoch = the lower quartile of the timed steps × the run's steps per epoch on all its images. Timing a sample
rather than a whole epoch keeps a configuration to seconds on any dataset size; the cost: evaluations and
checkpoints are not in s/epoch (a few per cent at the studies' settings, docs/performance.md).

A student of a teacher reads its teacher's outputs: with ``teacher_cache: on`` a pass of the teacher over the
test and validation images (once per teacher) and over every view of the training images (once per teacher,
seed and view, shared by the students). That pass is timed on the sample with ``teacher_outputs``, the
function a run calls, and scaled by the images it covers; each run of the study is charged the passes it
is the first to need. A teacher the study has not trained is a stand-in at random weights of its
architecture (the same cost per image); a trained one is copied, so its own ``cache/`` is untouched.
A student on synthetic images is timed on its real images and its steps per epoch scaled by ``synset_size``
(the generate run may not exist yet); ``generate`` runs are not timed, ``report`` runs cost nothing here.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from dapt.core.errors import DaptError
from dapt.core.files import atomic_write_json, read_json
from dapt.core.records import RunRecord
from dapt.data import SYNSET_SIZES
from dapt.data.imageset import ImageSet
from dapt.distillers import needs_teacher
from dapt.models.nets import create_model
from dapt.pipeline import config, projection
from dapt.pipeline.study import RunSpec, Study, load_study, parse_overrides
from dapt.stages.distill import distill, placed_teacher, teacher_outputs, training_views, view_count
from dapt.stages.teacher import train_teacher
from dapt.training.checkpoint import save_model
from dapt.training.device import Placement, device_name
from dapt.training.loop import load_data, model_meta

SAMPLE_EVAL = 256  # validation and test images of the sample: what the teacher pass is timed on besides training


class Enough(Exception):
    """Raised by ``StepClock`` to end a timed run once its steps are timed."""


class StepClock(RunRecord):
    """The record of a timed run: after ``warmup`` steps it times each step, after ``steps`` of them (or ``limit``
    seconds) it stops the run (``Enough``). ``seconds_per_step`` is their lower quartile: on a machine shared
    with other work, bursts of it slow some steps several times over (measured: 0.15 s steps taking 4 s), and
    neither the mean nor the median survives a burst that covers half of them; the quartile still keeps the
    run's own variation between steps, which the minimum would not."""

    def __init__(self, folder: Path, stage: str, cfg, warmup: int, steps: int, limit: float):
        folder.mkdir(parents=True, exist_ok=True)
        super().__init__(folder, stage, config.as_dict(cfg))
        self.warmup, self.steps, self.limit = warmup, steps, limit
        self.count, self.started, self.last = 0, 0.0, 0.0
        self.durations: list[float] = []

    def step_done(self) -> None:
        self.count += 1
        now = time.perf_counter()
        if self.count == self.warmup:
            self.started = now
        elif self.count > self.warmup:
            self.durations.append(now - self.last)
            if len(self.durations) >= self.steps or now - self.started >= self.limit:
                raise Enough
        self.last = now

    @property
    def seconds_per_step(self) -> float:
        if len(self.durations) == 1:
            return self.durations[0]
        return statistics.quantiles(self.durations, n=4, method="inclusive")[0]


def sample(ds: ImageSet, images: int) -> ImageSet:
    """``ds`` cut to ``images`` training images (a seeded draw, all classes) and ``SAMPLE_EVAL`` validation and
    test images: what a timed run trains and evaluates on."""
    keep = torch.randperm(len(ds.train_y), generator=torch.Generator().manual_seed(0))[:images].sort().values
    cut = {"train_x": ds.train_x[keep], "train_y": ds.train_y[keep], "test_x": ds.test_x[:SAMPLE_EVAL],
           "test_y": ds.test_y[:SAMPLE_EVAL]}
    if ds.train_index is not None:
        cut["train_index"] = ds.train_index[keep]
    if ds.val_y is not None:
        cut.update(val_x=ds.val_x[:SAMPLE_EVAL], val_y=ds.val_y[:SAMPLE_EVAL],
                   val_index=None if ds.val_index is None else ds.val_index[:SAMPLE_EVAL])
    return dataclasses.replace(ds, n_synthetic=0, **cut)


def teacher_pass(cfg, ds: ImageSet) -> float:
    """Seconds of what a student's run computes of its teacher (``stages.distill``'s own steps): the outputs on
    the test and validation images and, when the distiller learns from the teacher, its targets on every view
    of the training images, written to the teacher run's cache when ``teacher_cache`` is on."""
    wall = time.perf_counter()
    teacher, meta = placed_teacher(cfg, ds, Placement.of(cfg))  # on the device and in the memory format of a run
    views, diff_views = training_views(cfg, len(ds.train_y))
    teacher_outputs(cfg, ds, teacher, meta, views, diff_views, needs_teacher(cfg.distiller))
    return time.perf_counter() - wall


def stand_in_teacher(spec: RunSpec, ds: ImageSet, folder: Path) -> None:
    """A teacher run in ``folder`` at random weights of ``spec``'s architecture and image size: what a student
    reads from a teacher the study has not trained yet (its forward costs the same)."""
    cfg = spec.cfg
    model = create_model(cfg.model, ds.num_classes, pretrained=False, image_size=cfg.image_size)
    folder.mkdir(parents=True)
    save_model(folder / "model.pt", model, model_meta(cfg, ds, model, init=cfg.init, stage="teacher"))
    atomic_write_json(folder / "metrics.json", {"status": "done", "stage": "teacher", "params": spec.params})


def copy_teacher(source: Path, folder: Path) -> dict:
    """The finished teacher run ``source`` (its weights and record only) in ``folder``; its metrics."""
    metrics = read_json(source / "metrics.json")
    if metrics is None or metrics.get("status") != "done" or not (source / "model.pt").is_file():
        raise DaptError(f"{source.as_posix()}: not a finished teacher run (it needs metrics.json with status done "
                        f"and model.pt); train one with dapt run")
    folder.mkdir(parents=True)
    for name in ("metrics.json", "model.pt"):
        shutil.copy2(source / name, folder / name)
    return metrics


class Timer:
    """Times the configurations of one study in a temporary folder ``work``."""

    def __init__(self, study: Study, work: Path, warmup: int, steps: int, limit: float):
        self.study, self.work = study, work
        self.warmup, self.steps, self.limit = warmup, steps, limit
        self.data: dict[str, ImageSet] = {}
        self.teachers: dict[str, Path] = {}  # a teacher run's folder -> its copy or stand-in here
        self.rates: dict[tuple, float] = {}  # (teacher, cfg of the pass) -> seconds per teacher image
        self.device = ""

    def dataset(self, cfg) -> ImageSet:
        key = repr([getattr(cfg, k, None) for k in ("dataset", "image_size", "train_subset", "seed", "subset_seed",
                                                    "eval_subset", "data_root", "download")])
        if key not in self.data:
            self.data[key] = load_data(cfg)
        return self.data[key]

    def teacher(self, folder: str, ds: ImageSet) -> Path:
        """The temporary teacher run a timed student reads: a copy of a finished run, or a stand-in."""
        if folder not in self.teachers:
            target = self.work / "teachers" / str(len(self.teachers))
            metrics = read_json(Path(folder) / "metrics.json")
            if isinstance(metrics, dict) and metrics.get("status") == "done" and (Path(folder) / "model.pt").is_file():
                copy_teacher(Path(folder), target)
            else:  # validated: a run of this study that is not trained yet
                spec = next(s for s in self.study.runs if s.folder.as_posix() == Path(folder).as_posix())
                stand_in_teacher(spec, ds, target)
            self.teachers[folder] = target
        return self.teachers[folder]

    def time_run(self, spec: RunSpec) -> tuple[float | None, dict]:
        """(s/epoch, facts for the cache passes) of ``spec`` trained on a sample; None when it cannot be timed."""
        cfg = spec.cfg
        factor = 1 + SYNSET_SIZES[cfg.synset_size or "1x"] if getattr(cfg, "synthetic", None) else 1
        values = {"run_dir": (self.work / "runs" / spec.name).as_posix(), "resume": False, "checkpoint_every": None}
        if spec.stage == "distill":
            values.update(synthetic=None, synset_size=None, cache_views=1)  # one view: the sample's one epoch
        ds = self.dataset(cfg)
        steps_per_epoch = max(1, len(ds.train_y) * factor // cfg.batch_size)
        batches = min(self.warmup + self.steps, len(ds.train_y) // cfg.batch_size)
        if batches < 2:
            return None, {"note": f"{len(ds.train_y)} training images make fewer than 2 batches of {cfg.batch_size}"}
        small = sample(ds, batches * cfg.batch_size)
        facts: dict = {"n_train": len(ds.train_y) * factor, "n_eval": len(ds.test_y) + len(ds.val_y)}
        if spec.stage == "distill" and cfg.teacher:
            values["teacher"] = self.teacher(cfg.teacher, ds).as_posix()
        timed_cfg = dataclasses.replace(cfg, **values)
        if spec.stage == "distill" and cfg.teacher:
            facts["per_image"] = self.teacher_rate(timed_cfg, small)
        warmup = min(self.warmup, batches - 1)  # the sample is one epoch: the clock stops before its evaluation
        clock = StepClock(Path(timed_cfg.run_dir), spec.stage, timed_cfg, warmup, batches - warmup, self.limit)
        self.device = self.device or device_name(Placement.of(timed_cfg).device)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the stages' own lines: a timing prints its table
                (train_teacher if spec.stage == "teacher" else distill)(timed_cfg, small, clock)
        except Enough:
            pass
        if not clock.durations:
            raise DaptError(f"run {spec.name}: no training step could be timed")
        facts["steps"] = clock.durations
        return clock.seconds_per_step * steps_per_epoch, facts

    def teacher_rate(self, cfg, small: ImageSet) -> float:
        """Seconds per image of the teacher pass, timed on the sample (then cached, so the timed run reads it)."""
        learns = needs_teacher(cfg.distiller)
        key = (cfg.teacher, cfg.image_size, cfg.seed, cfg.diffaug, cfg.augment, cfg.teacher_amp, learns,
               cfg.cache_features)
        if key not in self.rates:
            images = len(small.test_y) + len(small.val_y) + (len(small.train_y) if learns else 0)
            with contextlib.redirect_stdout(io.StringIO()):
                self.rates[key] = teacher_pass(dataclasses.replace(cfg, teacher_cache="on"), small) / images
        return self.rates[key]


def cache_passes(study: Study, facts: dict[str, dict]) -> dict[str, float]:
    """Run name → seconds of the teacher passes it is the first of the study to need (study order), from each
    configuration's measured seconds per teacher image: with the cache, the test and validation images once per
    teacher and image size, each view of the training images once per teacher, seed and views; without, the
    test and validation images in every run (its targets are in its steps)."""
    seen: set = set()
    views_built: dict[tuple, int] = {}
    charged: dict[str, float] = {}
    for spec in study.runs:
        fact = facts.get(spec.name)
        if not fact or "per_image" not in fact:
            continue
        cfg, rate = spec.cfg, fact["per_image"]
        if cfg.teacher_cache != "on":
            charged[spec.name] = rate * fact["n_eval"]
            continue
        seconds = 0.0
        if (cfg.teacher, cfg.image_size) not in seen:
            seen.add((cfg.teacher, cfg.image_size))
            seconds += rate * fact["n_eval"]
        if needs_teacher(cfg.distiller):
            key = (cfg.teacher, cfg.image_size, cfg.seed, cfg.diffaug, cfg.augment, fact["n_train"])
            views = view_count(cfg.cache_views, cfg.epochs)
            seconds += rate * fact["n_train"] * max(0, views - views_built.get(key, 0))
            views_built[key] = max(views, views_built.get(key, 0))
        charged[spec.name] = seconds
    return charged


def time_study(study: Study, warmup: int, steps: int, limit: float, echo=print) -> projection.Timing:
    """Time each configuration of ``study`` (a progress line each) and return the timing."""
    confs = projection.configurations(study)
    timed: dict[str, projection.Timed] = {}
    facts: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="dapt-timing-") as tmp:
        timer = Timer(study, Path(tmp), warmup, steps, limit)
        for i, conf in enumerate(confs, 1):
            spec = conf.runs[0]
            epochs = int(getattr(spec.cfg, "epochs", 0) or 0)
            head = f"[{i}/{len(confs)}] {conf.label}"
            if conf.stage not in ("teacher", "distill"):
                note = "reads the other runs' records" if conf.stage == "report" else f"{conf.stage} runs are not timed"
                timed[conf.key] = projection.Timed(conf.label, conf.stage, [s.name for s in conf.runs], None, epochs,
                                                   note=note)
                echo(f"{head}: not timed ({note})")
                continue
            started = time.perf_counter()
            try:
                rate, fact = timer.time_run(spec)
            except DaptError as err:  # e.g. ImageNet weights not on this machine: the other configurations go on
                rate, fact = None, {"note": str(err)}
            facts.update({s.name: fact for s in conf.runs})
            timed[conf.key] = projection.Timed(conf.label, conf.stage, [s.name for s in conf.runs], rate, epochs,
                                               note=fact.get("note", ""))
            steps = fact.get("steps", [])
            echo(f"{head}: " + (f"{rate:.2f} s/epoch, the lower quartile of {len(steps)} steps ({min(steps):.2f} to "
                                f"{max(steps):.2f} s a step)" if rate is not None else f"not timed ({fact['note']})")
                 + f"; timed in {time.perf_counter() - started:.0f} s")
        device = timer.device or "cpu"
    charged = cache_passes(study, facts)
    for conf in confs:
        timed[conf.key].cache_s = sum(charged.get(s.name, 0.0) for s in conf.runs)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return projection.Timing(study.name, date, device, timed, charged)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dapt.stages.timing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once in the parallel projection")
    parser.add_argument("--warmup", type=int, default=2, help="steps before the clock starts (default 2)")
    parser.add_argument("--steps", type=int, default=10, help="steps timed per configuration (default 10)")
    parser.add_argument("--limit", type=float, default=8.0,
                        help="seconds after which a configuration's timing stops, however many steps (default 8)")
    args = parser.parse_args(argv)
    try:
        study = load_study(args.file, parse_overrides(args.set))
        print(f"study {study.name}: timing {len(projection.configurations(study))} configurations of "
              f"{len(study.runs)} runs ({args.warmup} warm-up steps, then {args.steps} steps or {args.limit:g} s "
              f"each); nothing is written under runs/", flush=True)
        timing = time_study(study, args.warmup, args.steps, args.limit,
                            echo=lambda line: print(line, flush=True))
    except DaptError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in projection.table(timing, study, max(1, args.parallel)):
        print(line)
    print(f"  saved to {projection.save(timing).as_posix()}; `dapt run {args.file} --dry-run` shows it per run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
