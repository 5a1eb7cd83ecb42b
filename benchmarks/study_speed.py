"""What a study's teacher costs: one teacher and S students on the same images and epochs, trained three
ways one after the other in one process, through dapt's own distill stage.

    .venv/bin/python benchmarks/study_speed.py                  # S = 4 on 2 quiet CPU cores (benchmarks/results/study_speed.md)
    .venv/bin/python benchmarks/study_speed.py --students kd crd --epochs 30
    .venv/bin/python benchmarks/study_speed.py --device cuda --image-size 224 --train-subset 5000 --epochs 4

1. alone: the S students with distiller ``none`` and no teacher at all: what the students cost by
   themselves, the floor any distillation pays.
2. shared: the S distillers with dapt's defaults: ``teacher_cache: on``, a fresh augmented view every
   epoch (``cache_views: null``), the teacher's forward in ``teacher_amp: auto``. First the teacher pass
   that the first student's run would make, timed on its own (the teacher on every view of every image,
   with features when one of the S reads them, as ``dapt run`` tells it: ``cache_features``; and on the
   test set), then the S students, who all read it.
3. live: the same S distillers with ``teacher_cache: off``: the teacher's forward at every step, the
   reference code's loop, on the same views and in the same precision.

The ways take turns student by student (alone, shared, live, then the next student), so a drift of the
machine's speed moves all three alike. Each configuration is validated like a params file, recorded by a ``RunRecord`` in a temporary folder and
trained by ``dapt.stages.distill.distill`` (``distill_speed.run_stage``), so what is timed is what a study
runs. Cost model per image and epoch, with a student step s and a teacher forward t: alone = S·s,
live = S·(s + t), shared ≈ S·s + t (one teacher pass for all S), so live/alone = 1 + t/s whatever S, and
shared/alone = 1 + t/(S·s): the cache's win grows with the students that share a teacher.
The last line: ``study_speed: S=<n> shared/alone=<x> live/alone=<y> acc_shared=<mean> acc_live=<mean>``.
Ratios measured in one invocation are the result; on a loaded machine every time moves.
"""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # distill_speed, beside this file

from distill_speed import EVALUATION, add_run_arguments, run_stage  # noqa: E402

from dapt.core.errors import DaptError  # noqa: E402
from dapt.distillers import DISTILLERS, needs_features, needs_teacher  # noqa: E402
from dapt.pipeline import config  # noqa: E402
from dapt.stages.timing import copy_teacher, teacher_pass  # noqa: E402
from dapt.training.loop import load_data  # noqa: E402

STUDENTS = ["kd", "crd", "srrl", "align_uniform"]
WAYS = ("alone", "shared", "live")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, epochs=15)
    parser.add_argument("--students", nargs="+", default=STUDENTS, metavar="DISTILLER",
                        choices=[d for d in DISTILLERS.names() if needs_teacher(d)],
                        help=f"the distillers of the S students (default: {' '.join(STUDENTS)})")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per student and way: accuracies are averaged "
                                                             "over them, times summed; each seed draws its own "
                                                             "views, so its own teacher pass (default 1)")
    return parser.parse_args(argv)


def ways(args: argparse.Namespace, teacher: str) -> dict[str, dict[str, dict]]:
    """way -> student name -> its distill values."""
    data = {"dataset": args.dataset, "train_subset": args.train_subset, "image_size": args.image_size, "seed": 0,
            **EVALUATION, **({"device": args.device} if args.device else {})}
    student = {**data, "student": args.student, "epochs": args.epochs}
    features = any(needs_features(d) for d in args.students)  # what `dapt run` would inject
    seeds = range(args.seeds)
    return {
        "alone": {f"none_{i}_s{seed}": {**student, "distiller": "none", "seed": seed}
                  for i in range(len(args.students)) for seed in seeds},
        "shared": {f"{d}_s{seed}": {**student, "distiller": d, "teacher": teacher, "cache_features": features,
                                    "seed": seed} for d in args.students for seed in seeds},
        "live": {f"{d}_s{seed}": {**student, "distiller": d, "teacher": teacher, "teacher_cache": "off", "seed": seed}
                 for d in args.students for seed in seeds},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so the temporary folder is removed
    with tempfile.TemporaryDirectory(prefix="dapt-study-speed-") as tmp:
        work = Path(tmp)
        teacher_dir = work / "teacher"
        plan = ways(args, teacher_dir.as_posix())
        try:
            for way, runs in plan.items():  # every mistake before any training
                for name, values in runs.items():
                    config.validate(config.DistillConfig, values, where=f"benchmark run {way}/{name}")
            first = next(iter(plan["alone"].values()))
            ds = load_data(config.validate(config.DistillConfig, first, where="benchmark data"))
            print(f"{ds.name}: {len(ds.train_y):,} training images, {ds.image_size} px; S = {len(args.students)} "
                  f"{args.student} students ({', '.join(args.students)}), {args.epochs} epochs each")
            if args.teacher:
                metrics = copy_teacher(args.teacher, teacher_dir)
                print(f"teacher {args.teacher.as_posix()}: test_acc {metrics.get('test_acc', float('nan')):.4f}")
            else:
                values = {k: v for k, v in first.items() if k not in ("student", "distiller")}
                wall, _, metrics = run_stage("teacher", {**values, "model": args.teacher_model, "init": "fr",
                                                         "epochs": args.teacher_epochs}, teacher_dir, ds)
                print(f"teacher {args.teacher_model} (fr, {args.teacher_epochs} epochs, {wall:.0f} s, not timed): "
                      f"test_acc {metrics['test_acc']:.4f}")
            # the ways take turns, student by student, so that a machine whose speed drifts during the
            # benchmark (other tenants, clocks) moves all three alike
            results: dict[str, dict[str, tuple[float, float, dict]]] = {way: {} for way in WAYS}
            # a seed draws its own views, so each seed's students share a teacher pass of their own
            seconds = sum(teacher_pass(config.validate(config.DistillConfig, values, where="benchmark teacher pass"), ds)
                          for values in list(plan["shared"].values())[:args.seeds])
            results["shared"]["teacher pass"] = (seconds, seconds, {})
            for turn in zip(*(plan[way].items() for way in WAYS)):
                for way, (name, values) in zip(WAYS, turn):
                    results[way][name] = run_stage("distill", values, work / way / name, ds)
        except DaptError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    totals, accuracy = {}, {}
    for way in WAYS:
        for name, (wall, cpu, metrics) in results[way].items():
            acc = f"test_acc {metrics['test_acc']:.4f}" if metrics else "(the cache every shared student reads)"
            print(f"{way:<7} {name:<18} {wall:8.1f} s  cpu {cpu:8.1f} s  {acc}")
        totals[way] = sum(wall for wall, _, _ in results[way].values())
        students = [m["test_acc"] for _, _, m in results[way].values() if m]
        accuracy[way] = sum(students) / len(students)
    images = len(ds.train_y) * args.epochs * len(args.students) * args.seeds
    print("  ".join(f"{way} {totals[way]:.1f} s ({images / totals[way]:.0f} img/s)" for way in WAYS))
    teacher = results["shared"]["teacher pass"][0]
    students = (totals["shared"] - teacher) / totals["alone"]
    print(f"shared = the teacher pass {teacher / totals['alone']:.2f} + the students {students:.2f} (their "
          f"distillers' own losses, the agreement metrics), in units of alone")
    print(f"study_speed: S={len(args.students)} shared/alone={totals['shared'] / totals['alone']:.2f} "
          f"live/alone={totals['live'] / totals['alone']:.2f} acc_shared={accuracy['shared']:.4f} "
          f"acc_live={accuracy['live']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
