"""What distillation costs over training from scratch: three runs of dapt's distill stage on the same
images, student and teacher, timed in one process.

    .venv/bin/python benchmarks/distill_speed.py --views 8         # 9 min on 2 quiet cores (measured)
    .venv/bin/python benchmarks/distill_speed.py --teacher runs/fashion_quick/lite2_ft --epochs 30
    .venv/bin/python benchmarks/distill_speed.py --device cuda --image-size 224 --train-subset 10000

The runs go through dapt's own code, as the notebooks call it: each configuration is validated like a
params file (``dapt.pipeline.config.validate``), recorded by a ``RunRecord`` in a temporary folder and trained by
``dapt.stages.teacher.train_teacher`` / ``dapt.stages.distill.distill``; so what is timed is what a study runs.

0. The teacher (not timed): ``--teacher-model`` (ResNet-50) trained from scratch for ``--teacher-epochs``
   on the same images (torchvision's ImageNet weights are not reachable offline), or the finished teacher
   run ``--teacher``, whose ``model.pt`` and ``metrics.json`` are copied into the temporary folder so that
   its teacher cache is built afresh inside the timed run and the run itself is left untouched.
1. scratch: distiller ``none``, one fresh crop/flip view per epoch. The teacher is given only to measure
   agreement on the test set, as the studies' ``none`` runs do, so all three runs evaluate alike.
2. live: ``kd`` with ``teacher_cache: off`` and one fresh view per epoch (``cache_views = epochs``): the
   teacher's forward pass at every step, the reference code's loop. Same pixels as scratch.
3. cached: ``kd`` with ``teacher_cache: on`` and the stage's default ``cache_views`` (a fresh view every
   epoch), or ``--views K`` replayed; the cache build (the teacher on K views of every training image, and
   on the validation and test images) is in its time. One student alone gains from the cache only by replaying views; a
   study's students share one cache (``benchmarks/study_speed.py``).

Cost model, per training image and epoch: a student step ``s``, a teacher forward ``t``, a cached-target
read ``c``; measured as CPU time of one thread at 32 px: s = 2.0 ms (MobileNetV2), t = 1.27 s (ResNet-50),
c = 0.001 s. Then live/scratch ≈ 1 + t/s ≈ 2.3 and cached/scratch ≈ 1 + K·t/(E·s) + c/s: for one
student the cache amortises only when the epochs E are many times the views K (``--views 8`` at 120
epochs: 1 + 8 × 1.27/120 ≈ 1.085), and replaying K < E views costs accuracy (docs/performance.md).
The evaluation is kept small (``EVALUATION``: every 20th epoch, on 200 validation images) so that it does
not dominate epochs of 6 steps in any of the three runs.
Ratios, not absolute times, are the result; on a loaded machine both move, so compare ratios measured
in one invocation only.
"""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from dapt.pipeline import config
from dapt.data import DATASETS
from dapt.stages.distill import distill
from dapt.distillers import DISTILLERS
from dapt.core.errors import DaptError
from dapt.models import MODELS
from dapt.core.records import RunRecord
from dapt.stages.teacher import train_teacher
from dapt.stages.timing import copy_teacher
from dapt.training.loop import load_data

# Per-epoch evaluation settings of every run (the final evaluation always uses all test images).
EVALUATION = {"eval_subset": 200, "precise_bn": 512, "eval_every": 20}


def run_stage(stage: str, values: dict, folder: Path, ds) -> tuple[float, float, dict]:
    """Validate ``values`` as a ``stage`` run, train it into ``folder``; (wall s, CPU s, metrics)."""
    cls = config.stage_config(stage)
    cfg = config.validate(cls, {**values, "run_dir": folder.as_posix()}, where=f"benchmark run {folder.name}")
    record = RunRecord.start(folder, stage, config.as_dict(cfg))
    wall, cpu = time.perf_counter(), time.process_time()
    (train_teacher if stage == "teacher" else distill)(cfg, ds, record)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    record.finish()
    return wall, cpu, record.metrics


def add_run_arguments(parser: argparse.ArgumentParser, epochs: int) -> None:
    """The data, student, teacher and device flags this benchmark shares with ``study_speed.py``."""
    parser.add_argument("--dataset", default="fashion_mnist", choices=DATASETS.names())
    parser.add_argument("--train-subset", type=int, default=800, help="training images (default 800)")
    parser.add_argument("--image-size", type=int, default=32, help="the students' image size (default 32)")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"epochs of each student run (default {epochs})")
    parser.add_argument("--student", default="mobilenet_v2", choices=MODELS.names())
    parser.add_argument("--teacher", type=Path, default=None, help="a finished teacher run folder to use instead "
                                                                   "of training one")
    parser.add_argument("--teacher-model", default="resnet50", choices=MODELS.names())
    parser.add_argument("--teacher-epochs", type=int, default=10, help="epochs of the teacher trained here (default 10)")
    parser.add_argument("--device", default=None, help="the runs' `device` (default: the stages' default)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, epochs=120)
    parser.add_argument("--distiller", default="kd", choices=[d for d in DISTILLERS.names() if d != "none"])
    parser.add_argument("--views", type=int, default=None,
                        help="cache_views of the cached run (default: the distill stage's default)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so the temporary folder is removed
    data = {"dataset": args.dataset, "train_subset": args.train_subset, "image_size": args.image_size, "seed": 0,
            **EVALUATION, **({"device": args.device} if args.device else {})}
    student = {**data, "student": args.student, "epochs": args.epochs}
    runs = {  # name -> distill values; scratch and live train on the same views, one per epoch
        "scratch": {**student, "distiller": "none", "teacher_cache": "off", "cache_views": args.epochs},
        "live": {**student, "distiller": args.distiller, "teacher_cache": "off", "cache_views": args.epochs},
        "cached": {**student, "distiller": args.distiller, "teacher_cache": "on",
                   **({"cache_views": args.views} if args.views else {})},
    }
    with tempfile.TemporaryDirectory(prefix="dapt-distill-speed-") as tmp:
        work = Path(tmp)
        teacher_dir = work / "teacher"
        try:
            for name, values in runs.items():  # every mistake before any training
                config.validate(config.DistillConfig, {**values, "teacher": teacher_dir.as_posix()},
                                where=f"benchmark run {name}")
            ds = load_data(config.validate(config.DistillConfig, runs["scratch"], where="benchmark data"))
            print(f"{ds.name}: {len(ds.train_y):,} training images, {len(ds.test_y):,} test images, "
                  f"{ds.image_size} px; {args.student} student, {args.epochs} epochs, {args.distiller}")
            if args.teacher:
                metrics = copy_teacher(args.teacher, teacher_dir)
                print(f"teacher {args.teacher.as_posix()}: test_acc {metrics.get('test_acc', float('nan')):.4f}")
            else:
                wall, _, metrics = run_stage("teacher", {**data, "model": args.teacher_model, "init": "fr",
                                                         "epochs": args.teacher_epochs}, teacher_dir, ds)
                print(f"teacher {args.teacher_model} (fr, {args.teacher_epochs} epochs, {wall:.0f} s, not timed): "
                      f"test_acc {metrics['test_acc']:.4f}")
            results = {}
            for name, values in runs.items():
                results[name] = run_stage("distill", {**values, "teacher": teacher_dir.as_posix()}, work / name, ds)
        except DaptError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    for name, (wall, cpu, metrics) in results.items():
        views = metrics["params"]["cache_views"] or "default"
        print(f"{name:<8} {wall:8.1f} s  {wall / args.epochs:6.2f} s/epoch  cpu {cpu:8.1f} s  views {views:<7} "
              f"test_acc {metrics['test_acc']:.4f}")
    scratch = results["scratch"][0]
    print(f"ratio cached/scratch={results['cached'][0] / scratch:.2f} live/scratch={results['live'][0] / scratch:.2f} "
          f"acc_cached={results['cached'][2]['test_acc']:.4f} acc_live={results['live'][2]['test_acc']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
