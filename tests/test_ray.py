"""`dapt run --executor ray`: the study's runs as Ray tasks on a local Ray instance (2 CPUs).

One Ray session serves the module (its startup takes seconds); the notebooks are really executed
by papermill inside Ray workers, on digits with tiny params, into a throwaway project folder.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from projects import REPO, new_project, working_in
from dapt.cli import main


STUDY = """
study: raytiny
defaults: {dataset: digits, image_size: 16, train_subset: 300, epochs: 1, batch_size: 50}
runs:
  - {stage: teacher, name: teacher, model: resnet18, init: fr, optimizer: sgd, lr: 0.05}
  - {stage: distill, name: kd, student: mobilenet_v2, teacher: teacher, distiller: kd}
  - {stage: distill, name: scratch, student: mobilenet_v2, distiller: none}
"""

# t fails (cifar10's files hold garbage), other does not need it, s does, the report reads them all
BROKEN = """
study: {name}
defaults: {{dataset: cifar10}}
runs:
  - {{stage: teacher, name: t, model: resnet18, init: fr}}
  - {{stage: teacher, name: other, model: resnet18, init: fr, dataset: digits, image_size: 8,
     train_subset: 100, epochs: 1, batch_size: 50}}
  - {{stage: distill, name: s, teacher: t, distiller: kd}}
  - {{stage: report, name: report}}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = new_project(tmp_path_factory.mktemp("rayproject"), {"raytiny": STUDY})
    cifar = root / "data" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for name in ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch"):
        (cifar / name).write_bytes(b"not a pickle")
    for _ in working_in(root):
        yield root


@pytest.fixture(scope="module")
def ray_address(project):
    """A local Ray instance with 2 CPUs, open for the module; the executor uses it as it is."""
    import logging

    import ray

    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
            break
        except Exception as err:
            # Ray's raylet waits a fixed 15 s for its agents (ray-project/ray#65983): a heavily loaded
            # machine can miss that; another attempt usually makes it
            ray.shutdown()
            if attempt == 2:
                pytest.fail(f"Ray could not start a local instance in 3 attempts ({err}); its raylet gives its "
                            f"agents a fixed 15 s (ray-project/ray#65983), and this machine's load is "
                            f"{os.getloadavg()[0]:.0f}")
            time.sleep(10)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def executed(project, ray_address):
    return main(["run", "params/raytiny.yaml", "--quiet", "--executor", "ray"])


def span(notebook: Path) -> tuple[datetime, datetime]:
    """When papermill started and ended executing ``notebook`` (recorded in its metadata)."""
    meta = json.loads(notebook.read_text())["metadata"]["papermill"]
    return datetime.fromisoformat(meta["start_time"]), datetime.fromisoformat(meta["end_time"])


@pytest.mark.slow
def test_ray_executes_every_run_with_the_records_of_a_local_run(project, executed):
    assert executed == 0
    for name in ("teacher", "kd", "scratch"):
        folder = project / "runs/raytiny" / name
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["status"] == "done", (name, metrics.get("error"))
        assert isinstance(metrics["test_acc"], float) and len(metrics["history"]) == 1
        assert (folder / "notebook.ipynb").is_file() and (folder / "model.pt").is_file()
        assert yaml.safe_load((folder / "params.yaml").read_text())["run_dir"] == f"runs/raytiny/{name}"
    assert json.loads((project / "runs/raytiny/kd/metrics.json").read_text())["teacher_run"] == "runs/raytiny/teacher"
    assert not list((project / "runs/raytiny").glob(".ray-driver-*")), "the driver's marker was left behind"


@pytest.mark.slow
def test_teacher_runs_before_its_students_and_independent_runs_overlap(project, executed):
    teacher = span(project / "runs/raytiny/teacher/notebook.ipynb")
    scratch = span(project / "runs/raytiny/scratch/notebook.ipynb")
    assert span(project / "runs/raytiny/kd/notebook.ipynb")[0] >= teacher[1]
    # scratch needs nothing: it was executing while the teacher was (2 CPUs, 1 per run)
    assert scratch[0] < teacher[1] and teacher[0] < scratch[1], (teacher, scratch)


@pytest.mark.slow
def test_ray_skips_runs_already_done(project, executed, capsys):
    before = (project / "runs/raytiny/teacher/metrics.json").read_text()
    assert main(["run", "params/raytiny.yaml", "--quiet", "--executor", "ray"]) == 0
    out = capsys.readouterr().out
    assert out.count("already done with these parameters, skipped") == 3
    assert (project / "runs/raytiny/teacher/metrics.json").read_text() == before


def comparable(folder: Path) -> dict:
    """A run's metrics.json without what differs between two executions of the same run."""
    record = json.loads((folder / "metrics.json").read_text())
    record.pop("wall_time_s")
    record.pop("provenance")  # the date each execution started
    record["params"].pop("run_dir")
    return record


@pytest.mark.slow
def test_failures_give_the_statuses_and_records_of_the_local_executor(project, ray_address, capsys, monkeypatch):
    from dapt.pipeline.ray_executor import RayExecutor
    from dapt.pipeline.runner import run_study
    from dapt.pipeline.study import load_study

    for name in ("broken_local", "broken_ray"):
        (project / "params" / f"{name}.yaml").write_text(textwrap.dedent(BROKEN.format(name=name)))
    # Ray gives a 1-CPU task OMP_NUM_THREADS=1; the local kernel with as many threads sums in the same
    # order, so the two executions of `other` give the same numbers. The local executor's statuses for this
    # study with --keep-going are test_pipeline's (its failed-run test): only `other` is executed locally here.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert run_study(load_study("params/broken_local.yaml"), only=["other"], log_output=False) == {"other": "done"}
    local = {"t": "failed", "other": "done", "s": "blocked", "report": "done"}

    ray_study = load_study("params/broken_ray.yaml")
    # Without --keep-going the study stops at t: nothing more is submitted, but `other` (needing
    # nothing) was executing beside t on the second CPU, and finishes; the local executor never started it.
    stopped = run_study(ray_study, log_output=False, executor=RayExecutor())
    assert stopped == {"t": "failed", "other": "done", "s": "not run", "report": "not run"}
    assert "s: not run, the study stopped at t" in capsys.readouterr().out
    kept_going = run_study(ray_study, keep_going=True, log_output=False, executor=RayExecutor())
    assert kept_going == local
    assert not (project / "runs/broken_ray/s").exists(), "a blocked run must leave nothing behind"

    failed = json.loads((project / "runs/broken_ray/t/metrics.json").read_text())
    assert failed["status"] == "failed" and "cannot read CIFAR batch" in failed["error"]
    assert comparable(project / "runs/broken_ray/other") == comparable(project / "runs/broken_local/other")
    files = {p.relative_to(project / "runs/broken_local/other").as_posix()
             for p in (project / "runs/broken_local/other").rglob("*")}
    assert files == {p.relative_to(project / "runs/broken_ray/other").as_posix()
                     for p in (project / "runs/broken_ray/other").rglob("*")}


@pytest.mark.slow
def test_sigterm_cancels_the_runs_in_flight_and_records_them_interrupted(project, ray_address):
    """A second driver, on the module's Ray instance through --address, is stopped by SIGTERM."""
    (project / "params" / "raylong.yaml").write_text(
        "{stage: teacher, name: t, model: resnet18, init: fr, dataset: digits, image_size: 16, train_subset: 300,"
        " epochs: 200, batch_size: 50, optimizer: sgd, lr: 0.05}\n")
    env = {**os.environ, "DAPT_ROOT": str(project), "WANDB_MODE": "disabled"}
    process = subprocess.Popen([sys.executable, "-m", "dapt.cli", "run", "params/raylong.yaml", "--quiet",
                                "--executor", "ray", "--address", ray_address],
                               cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics_file = project / "runs/raylong/t/metrics.json"
    deadline = time.time() + 180
    while time.time() < deadline and not (json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
                                          ).get("history"):
        time.sleep(0.5)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=90)
    assert process.returncode == 130 and "dapt: interrupted" in err, err
    assert "t: interrupted" in out
    metrics = json.loads(metrics_file.read_text())
    assert metrics["status"] == "interrupted" and 1 <= len(metrics["history"]) < 200
    assert (project / "runs/raylong/t/notebook.ipynb").is_file()
    time.sleep(3)  # a kernel left running would go on writing the record
    assert json.loads(metrics_file.read_text()) == metrics


@pytest.mark.parametrize("args, fragment", [
    (["--address", "10.0.0.1:6379"], "--address is an option of the Ray executor"),
    (["--gpus-per-run", "1"], "--gpus-per-run is an option of the Ray executor"),
    (["--executor", "ray", "--cpus-per-run", "0"], "--cpus-per-run must be above 0"),
    (["--executor", "ray", "--address", "127.0.0.1:1"], "cannot connect to the Ray cluster at 127.0.0.1:1"),
])
def test_ray_options_without_the_ray_executor_or_out_of_range_are_one_line(args, fragment, capsys, tmp_path):
    assert main(["run", str(REPO / "params/teacher_demo.yaml"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def test_ray_executor_without_ray_installed_names_the_fix(tmp_path):
    # sys.modules["ray"] = None makes `import ray` fail as it does where Ray is not installed
    code = ("import sys; sys.modules['ray'] = None; from dapt.cli import main; "
            f"sys.exit(main(['run', {str(REPO / 'params/teacher_demo.yaml')!r}, '--executor', 'ray']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "pip install ray" in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_ray_task_leaves_a_run_held_by_another_process_alone(project, ray_address, capsys):
    """The run is taken by another live process after the driver planned it: the Ray task that reaches
    it settles it ``held`` and stops the study there; the run's files stay as the holder has them."""
    from test_locks import hold, snapshot

    from dapt.pipeline.ray_executor import RayExecutor
    from dapt.pipeline.runner import plan
    from dapt.pipeline.schedule import Schedule
    from dapt.pipeline.study import load_study

    (project / "params" / "rayheld.yaml").write_text(
        "{stage: teacher, name: t, model: resnet18, init: fr, dataset: digits, image_size: 8, train_subset: 100,"
        " epochs: 1, batch_size: 50}\n")
    schedule = Schedule(plan(load_study("params/rayheld.yaml")))
    holder = hold(project / "runs/rayheld/t")
    try:
        before = snapshot(project / "runs/rayheld")
        RayExecutor()(schedule, log_output=False)
        assert schedule.results == {"t": "held"}
        assert f"is being executed by pid {holder.pid}" in capsys.readouterr().out
        assert snapshot(project / "runs/rayheld") == before
        assert main(["run", "params/rayheld.yaml", "--quiet", "--executor", "ray"]) == 2  # refused at its plan
        assert f"run 't' is being executed by pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
