"""The ``dapt`` command: run studies, show their state, list what can be chosen."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Sequence

from dapt.core.errors import DaptError
from dapt.core.ranks import is_main, world_size

DESCRIPTION = """\
dapt: distillation as an alternative to pre-training small models.

Each stage (teacher, distill, ...) is a parameterised notebook in notebooks/; `dapt run` executes
them with papermill over a params file and keeps every executed notebook in runs/<study>/<run>/
as the run's report, next to params.yaml, metrics.json and figures/.
"""

RUN_HELP = """\
Validate every run of FILE (a study with `defaults`, `runs` and optional `grid`, or a single
run), then execute them in dependency order. Runs already done with the same parameters are
skipped; a finished run is never replaced by one with other parameters unless --force is given.
Nothing is created under runs/ when the file does not validate. A failed run stops the study
(--keep-going: the runs that do not need it go on); Ctrl-C or SIGTERM marks the running run
interrupted and keeps its partial notebook.

--executor ray runs the runs that do not depend on each other in parallel, as Ray tasks, each
one as soon as every run it needs is done (a teacher before its students), with the same
records, skips and statuses; on a local Ray instance, or on a running cluster (--address) whose
nodes share runs/ and the repository checkout with this machine at the same path (docs/scale.md).

--timing runs nothing of the study: it times one epoch of each configuration (the runs equal but for their
seed) with the real stage code and the study's params (--set device=cuda times it on a GPU): a few warm-up
steps, then up to 10 steps or 8 s on a sample of the images, scaled to the run's steps per epoch, with the
teacher-cache pass a student needs (a teacher not trained yet is timed at random weights), in a temporary
folder: nothing is written under runs/. It prints per configuration s/epoch, epochs and the projected time,
the study's total, and the wall time under --executor ray with --parallel N runs at once (default: this
machine's CPUs / --cpus-per-run). The timing is kept in .dapt-cache/timing/<study>.json; --dry-run then shows
each matching run's projected time (docs/performance.md).
"""


REPORT_HELP = """\
Print what a study's runs show, read from their metrics.json files: the configurations (runs equal
but for their seed, each metric the mean ± sample std over the seeds, n the seeds), the claims table
(each comparison's A − B, Welch's p and verdict), one sentence per claim, and what the study's budget
can and cannot show. --runs adds the table of every run; --markdown prints instead the results block
the docs embed between their results markers; --html renders every executed notebook of the study to
runs/<study>/html/<run>.html with an index.html linking them.

--csv DIR writes the configurations and claims tables with every column the analysis computes (means,
stds, gaps, Welch's t, df and raw p, and whatever else it records) to DIR/configurations.csv and
DIR/claims.csv, one row per configuration and per comparison, for a paper's own plots; --json DIR writes
DIR/summary.json: both lists, values as they are, and the rest of the summary (plateaus, teacher margins,
budget). DIR is created if needed and may be the same for both; these print no report.
"""


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _executor(args: argparse.Namespace) -> dict:
    """``run_study``'s executor argument for the flags; a flag of the Ray executor without it is an error."""
    ray_flags = [flag for flag, value in (("--address", args.address), ("--cpus-per-run", args.cpus_per_run),
                                          ("--gpus-per-run", args.gpus_per_run)) if value is not None]
    if args.executor != "ray":
        if ray_flags:
            raise DaptError(f"{ray_flags[0]} is an option of the Ray executor: add --executor ray, or leave it out")
        return {}
    if world_size() > 1:
        raise DaptError("--executor ray runs each run as one Ray task and cannot run under torchrun: start "
                        "`dapt run FILE --executor ray` as one process, or use torchrun without --executor ray")
    if args.dry_run:
        return {}  # a dry run executes nothing, so it needs no Ray
    from dapt.pipeline.ray_executor import RayExecutor

    return {"executor": RayExecutor(args.address, 1.0 if args.cpus_per_run is None else args.cpus_per_run,
                                    args.gpus_per_run or 0.0)}


def _timing(args: argparse.Namespace) -> int:
    """``dapt run FILE --timing``: ``python -m dapt.stages.timing`` in a child process, its lines echoed as they
    come. A child, because the command line may not import the training code (tests/test_layers.py), and the
    torch it loads then stays out of this process."""
    import subprocess
    from pathlib import Path

    import dapt
    from dapt.core.progress import RECORDED

    if args.dry_run or args.only or args.force or args.resume or args.keep_going:
        raise DaptError("--timing runs nothing of the study, so it takes none of --dry-run, --only, --force, "
                        "--resume, --keep-going; give it alone (with --set, --parallel, --cpus-per-run)")
    if world_size() > 1:
        raise DaptError("--timing times the study in one process: start `dapt run FILE --timing` without torchrun")
    parallel = args.parallel or max(1, int((os.cpu_count() or 1) // (args.cpus_per_run or 1.0)))
    command = [sys.executable, "-m", "dapt.stages.timing", args.file, "--parallel", str(parallel),
               *(f"--set={item}" for item in args.set or [])]
    package_root = str(Path(dapt.__file__).resolve().parents[1])  # the child imports this very dapt
    env = {**os.environ, **RECORDED,  # no progress bars in the child: its lines are the output
           "PYTHONPATH": os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as child:
        for line in child.stdout:
            print(line, end="", flush=True)
    return child.returncode


def _cmd_run(args: argparse.Namespace) -> int:
    from dapt.pipeline.runner import dry_run, run_study
    from dapt.pipeline.study import load_study, parse_overrides

    if args.timing:
        return _timing(args)
    if args.parallel is not None:
        raise DaptError("--parallel is an option of --timing (the runs at once it projects for); add --timing")
    executor = _executor(args)
    study = load_study(args.file, parse_overrides(args.set))
    if args.dry_run:
        dry_run(study, force=args.force, only=args.only or None)
        return 0
    started = time.time()
    # SIGTERM (a scheduler, `kill`) ends a run like Ctrl-C: recorded as interrupted, notebook kept
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        results = run_study(study, force=args.force, only=args.only or None, log_output=not args.quiet,
                            keep_going=args.keep_going, resume=args.resume, **executor)
    finally:
        signal.signal(signal.SIGTERM, previous)
    bad = {name: status for name, status in results.items() if status != "done"}
    minutes, seconds = divmod(int(time.time() - started), 60)
    if is_main():  # under torchrun rank 0 speaks for every process
        print(f"study {study.name}: {len(results) - len(bad)} of {len(results)} runs done in {minutes} min {seconds} s"
              + (f"; not done: {', '.join(f'{n} ({s})' for n, s in bad.items())}" if bad else ""))
    return 1 if bad else 0


def _cmd_status(args: argparse.Namespace) -> int:
    from dapt.core import lock as run_lock
    from dapt.core.files import read_json
    from dapt.core.provenance import study_line
    from dapt.pipeline.runner import name_width, run_state
    from dapt.pipeline.study import load_study

    study = load_study(args.file, check_data=False)  # the state of runs needs no dataset
    print(f"study {study.name} ({study.source})")
    width = name_width(study.runs)
    print(f"  {'run':<{width}} {'stage':<9} {'status':<12} {'test acc %':>10} {'time_s':>8}  note")
    recorded = []  # the provenance of every run that has a record (None: recorded before provenance)
    for spec in study.runs:
        state = run_state(spec)
        metrics = read_json(spec.folder / "metrics.json")
        if isinstance(metrics, dict):
            recorded.append(metrics.get("provenance") if isinstance(metrics.get("provenance"), dict) else None)
        metrics = metrics if isinstance(metrics, dict) else {}
        acc = metrics.get("test_acc")
        acc_text = f"{100 * acc:.2f}" if isinstance(acc, (int, float)) and not isinstance(acc, bool) else "-"
        wall = metrics.get("wall_time_s")
        wall_text = f"{wall:.0f}" if isinstance(wall, (int, float)) else "-"
        note = "" if state.status == "new" or state.same_params else f"params differ: {', '.join(state.changed)}"
        holder = run_lock.holder(spec.folder)
        if holder is not None:
            note = f"executing: {holder.describe()}"
        elif state.status == "running":  # nobody holds it: its process was killed before it could record that
            note = "its process is gone; dapt run --resume continues it"
        print(f"  {spec.name:<{width}} {spec.stage:<9} {state.status:<12} {acc_text:>10} {wall_text:>8}  {note}")
    print(f"  {study_line(recorded)}")  # which code, torch and device recorded the runs: alike or not
    return 0


def _study_of(target: str) -> tuple[str, str]:
    """``dapt report``'s argument as (study name, source): a params file, or a study folder ``runs/<study>``."""
    from pathlib import Path

    from dapt.analysis.results import study_folder
    from dapt.core.files import rel, repo_root
    from dapt.pipeline.study import load_study

    path = Path(target)
    if path.is_dir():
        try:  # repo-relative, so `cd runs && dapt report fashion_quick` works too
            folder = study_folder(rel(path))
        except DaptError:
            raise DaptError(f"{target}: not a study folder of this project: give runs/<study> (in {repo_root()}) "
                            f"or a params file") from None
        return folder.name, folder.as_posix()
    if not path.exists():
        raise DaptError(f"{target}: no such params file or study folder (runs/<study>)")
    study = load_study(path, check_data=False)  # reports read the runs' records, not the dataset
    return study.name, study.source


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dapt.ui.html import write_html
    from dapt.analysis.results import block, study_text
    from dapt.core.records import RUNS_DIR
    from dapt.core.files import use_repo_root

    exports = _export_folders(args)
    name, source = _study_of(args.study)
    use_repo_root()
    folder = Path(RUNS_DIR) / name
    if exports:
        return _export(name, folder, exports)
    if args.markdown:
        print(block(folder.as_posix()))
    elif args.html:
        print(f"study {name}: open {write_html(name, source, no_input=args.no_input).as_posix()}")
    else:
        print(study_text(folder, with_runs=args.runs) if folder.is_dir() else f"study {name}: no runs yet")
    return 0


def _export_folders(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(kind, absolute folder) of ``dapt report --csv DIR`` and ``--json DIR``, each checked and resolved where
    the command was typed, before the report moves to the repository root: not an existing file."""
    from pathlib import Path

    from dapt.analysis.export import target

    given = [(kind, where) for kind, where in (("csv", args.csv), ("json", args.json)) if where]
    if given and (args.markdown or args.html or args.runs):
        raise DaptError("--csv and --json write files and print no report: give them without --markdown, --html "
                        "and --runs")
    return [(kind, target(Path(where)).resolve()) for kind, where in given]


def _export(name: str, folder: Path, exports: list[tuple[str, Path]]) -> int:
    """Write the study's tables into each (kind, folder) of ``_export_folders`` and say where."""
    from dapt.analysis import export
    from dapt.analysis.summary import Summary
    from dapt.core.files import rel

    if not folder.is_dir():
        raise DaptError(f"study {name}: no runs yet, so no tables to write (run the study first)")
    summary = Summary.read(folder)
    written = []
    for kind, where in exports:
        written += export.write_csv(summary, where) if kind == "csv" else [export.write_json(summary, name, where)]
    print(f"study {name}: {len(summary.configurations)} configurations, {len(summary.comparisons)} claims written "
          f"to {', '.join(rel(path) for path in written)}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from dapt.pipeline import config
    from dapt.data import DATASETS
    from dapt.distillers import CONNECTORS, DISTILLERS, PROJECTORS
    from dapt.models import MODELS, model_info

    print("stages:")
    for stage, cls in config.STAGES.items():
        print(f"  {stage:<20} {(cls.__doc__ or '').strip().splitlines()[0]}")
    print("models:")
    for name in MODELS.names():
        info = model_info(name)
        weights = "offline" if info["pretrained_offline"] else "download or local file"
        print(f"  {name:<20} {info['summary']}; features {info['feat_dim']}, ImageNet weights: {weights}")
    for title, registry in [("datasets", DATASETS), ("distillers", DISTILLERS), ("projectors", PROJECTORS),
                            ("srrl connectors", CONNECTORS)]:
        print(f"{title}:")
        for name in registry.names():
            print(f"  {name:<20} {registry.summary(name)}")
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from dapt.pipeline import config

    if args.markdown:
        from dapt.ui.docs import params_markdown

        print(params_markdown(args.stage))
        return 0
    for stage in [args.stage] if args.stage else list(config.STAGES):
        cls = config.stage_config(stage)
        print(f"parameters of stage {stage!r} (notebooks/{stage}.ipynb):")
        for key, default, text, choices in config.param_help(cls):
            print(f"  {key:<20} {config.yaml_value(default):<24} {text}" + (f" [{choices}]" if choices else ""))
    return 0


def _cmd_docs(args: argparse.Namespace) -> int:
    from dapt.core.files import use_repo_root
    from dapt.ui.docs import regenerate

    stale = regenerate(use_repo_root(), write=not args.check)  # results markers name repo-relative folders
    verb = "differ from their runs and fields" if args.check else "regenerated"
    print(f"{', '.join(stale)}: generated blocks {verb}" if stale else "every generated block is up to date")
    return 1 if stale and args.check else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dapt", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="validate and execute the runs of a params file", description=RUN_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("file", help="params file, e.g. params/fashion_quick.yaml")
    run.add_argument("--force", action="store_true", help="re-execute runs that are already done")
    run.add_argument("--only", nargs="+", metavar="RUN", help="execute only these runs of the study")
    run.add_argument("--keep-going", action="store_true",
                     help="after a failed run, go on with the runs that do not depend on it (default: stop)")
    run.add_argument("--resume", action="store_true",
                     help="continue interrupted or failed runs from their last epoch checkpoint (last.pt)")
    run.add_argument("--quiet", action="store_true", help="do not echo the notebooks' output")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override KEY in every run whose stage has it (repeatable; the value is read as YAML, "
                          "validated like the file)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the resolved runs (name, stage, status, action, the values set) and execute nothing")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local (default): one run after the other in this process; ray: runs that do not need "
                          "each other in parallel, as Ray tasks")
    run.add_argument("--address", metavar="ADDR",
                     help="with --executor ray: the running Ray cluster to use (e.g. 10.0.0.1:6379, from `ray start "
                          "--head`); default: start a local Ray instance on this machine")
    run.add_argument("--cpus-per-run", type=float, metavar="N",
                     help="with --executor ray: CPUs each run reserves, and the threads its torch uses (default 1)")
    run.add_argument("--gpus-per-run", type=float, metavar="N",
                     help="with --executor ray: GPUs each run reserves (default 0; a fraction such as 0.5 shares one)")
    run.add_argument("--timing", action="store_true",
                     help="execute nothing: time one epoch of each configuration and print the projected time of "
                          "the study, one run after the other and with --executor ray (see above)")
    run.add_argument("--parallel", type=int, metavar="N",
                     help="with --timing: runs at once in the --executor ray projection (default: the CPUs / "
                          "--cpus-per-run)")
    run.set_defaults(func=_cmd_run)

    status = sub.add_parser("status", help="show the state of each run of a params file",
                            description="Show status, test accuracy (%) and wall time of each run of FILE, and "
                                        "one line on the code, torch and device that recorded them.")
    status.add_argument("file", help="params file")
    status.set_defaults(func=_cmd_status)

    rep = sub.add_parser("report", help="print a study's configurations, comparisons and verdicts, its README "
                                        "results block, or its notebooks as HTML",
                         description=REPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("study", metavar="STUDY", help="a params file (params/x.yaml: its runs in runs/x/) or a study "
                                                    "folder (runs/x)")
    shown = rep.add_mutually_exclusive_group()
    shown.add_argument("--markdown", action="store_true",
                       help="print the results block the docs embed (configurations and claims tables, verdicts) "
                            "between the <!-- results: runs/x --> and <!-- /results --> markers; `dapt docs` "
                            "rewrites every such block in README.md and docs/")
    shown.add_argument("--html", action="store_true", help="render the executed notebooks and an index to HTML")
    shown.add_argument("--runs", action="store_true", help="also print the table of every run (each seed its own row)")
    rep.add_argument("--no-input", action="store_true", help="with --html: leave the code cells out")
    rep.add_argument("--csv", metavar="DIR", help="write DIR/configurations.csv and DIR/claims.csv (every column the "
                                                  "analysis computes) instead of printing the report")
    rep.add_argument("--json", metavar="DIR", help="write DIR/summary.json (both tables and the rest of the summary) "
                                                   "instead of printing the report")
    rep.set_defaults(func=_cmd_report)

    lister = sub.add_parser("list", help="list stages, datasets, models, distillers, projectors",
                            description="List every name a params file may use, from the registries.")
    lister.set_defaults(func=_cmd_list)

    params = sub.add_parser("params", help="list the parameters of a stage (or of every stage) with defaults",
                            description="List the parameters of STAGE (default: every stage): key, default, "
                                        "meaning, valid values.")
    params.add_argument("stage", nargs="?", metavar="STAGE", help="a stage name, e.g. teacher")
    params.add_argument("--markdown", action="store_true",
                        help="print Markdown instead; without STAGE, the reference docs/params.md embeds")
    params.set_defaults(func=_cmd_params)

    docs = sub.add_parser("docs", help="regenerate the generated blocks of README.md, docs/*.md and the notebooks",
                          description="Rewrite every results block (dapt report runs/<study> --markdown), the "
                                      "parameters reference (dapt params --markdown) and the registry lists "
                                      "(<!-- choices: stage.key -->) in README.md, docs/*.md and the notebooks' "
                                      "markdown, and each stage notebook's parameters cell from the stage's fields.")
    docs.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is out of date")
    docs.set_defaults(func=_cmd_docs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DaptError as err:
        print(f"dapt: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dapt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # a reader such as `head` stopped reading: end quietly, like other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
