"""One study, one runner: a run being executed is held by its process (``dapt.core.lock``), and every
other process that reaches it (a second `dapt run`, the explorer, a Ray task) leaves it alone; a lock
whose process died is stale and taken over, so `--resume` needs no manual step after a kill -9.

The holders are real processes: `dapt run` executing the real notebooks, or a Python process that took
the lock and waits."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dapt.cli import main
from dapt.core import lock as run_lock
from dapt.core.files import pid_runs
from projects import REPO, descendants, new_project, working_in

TEACHER = """
study: locked
defaults: {dataset: digits, image_size: 16, train_subset: 300, batch_size: 50}
runs:
  - {stage: teacher, name: t, model: resnet18, init: fr, optimizer: sgd, lr: 0.05, epochs: %d}
"""

HOLD = """
    import sys, time
    from dapt.core import lock
    held = lock.acquire(sys.argv[1])
    print("held", flush=True)
    time.sleep(600)
"""


def env(root: Path) -> dict:
    return {**os.environ, "DAPT_ROOT": str(root), "WANDB_MODE": "disabled",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def hold(folder: Path) -> subprocess.Popen:
    """A live process holding the lock of ``folder``."""
    process = subprocess.Popen([sys.executable, "-u", "-c", textwrap.dedent(HOLD), str(folder)], env=env(folder),
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def dapt_run(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dapt.cli", "run", "params/locked.yaml", "--quiet", *args],
                            cwd=root, env=env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else b"<dir>" for p in root.rglob("*")}


def write_lock(folder: Path, **changes) -> Path:
    """A lock file as another process would have left it (its fields changed by ``changes``)."""
    from dataclasses import asdict, replace

    folder.mkdir(parents=True, exist_ok=True)
    path = run_lock.lock_path(folder)
    path.write_text(json.dumps(asdict(replace(run_lock.Holder.this_process(), **changes))))
    return path


def ended_pid() -> int:
    """The pid of a process that has ended (and been reaped): nothing runs under it now."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    return ended.pid


# --- the lock's rules ------------------------------------------------------------------------------

def test_a_live_holder_keeps_its_run_and_a_release_frees_it(tmp_path):
    holder = hold(tmp_path / "run")
    try:
        found = run_lock.holder(tmp_path / "run")
        assert found is not None and found.pid == holder.pid
        with pytest.raises(run_lock.RunHeld, match=rf"is being executed by pid {holder.pid} on "):
            run_lock.acquire(tmp_path / "run")
    finally:
        holder.kill()
        holder.wait()
    with run_lock.acquire(tmp_path / "run") as lock:  # its process is gone: stale, taken over
        assert lock.took_over is not None and lock.took_over.pid == holder.pid
        assert run_lock.holder(tmp_path / "run").pid == os.getpid()
    assert run_lock.holder(tmp_path / "run") is None and not run_lock.lock_path(tmp_path / "run").exists()
    assert [p.name for p in (tmp_path / "run").iterdir()] == [], "temp files of the lock were left behind"


def test_a_pid_reused_by_another_process_does_not_hold_the_lock(tmp_path):
    write_lock(tmp_path / "run", pid=os.getppid(), pid_start="1")  # a running pid, started at another time
    assert run_lock.holder(tmp_path / "run") is None


def test_a_killed_holder_not_yet_reaped_does_not_hold_the_lock(tmp_path):
    # a zombie: the child has exited and this process, its parent, has not waited for it yet (as a Ray worker
    # killed by force is, until its raylet reaps it); its lock must not keep the run from being marked
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        time.sleep(0.05)
    try:
        assert not pid_runs(child.pid) and pid_runs(os.getpid())
        write_lock(tmp_path / "run", pid=child.pid, pid_start="")  # no start time: the pid alone decides
        assert run_lock.holder(tmp_path / "run") is None
    finally:
        child.wait()


def test_another_hosts_lock_is_held_while_its_heartbeat_is_fresh(tmp_path):
    path = write_lock(tmp_path / "run", host="node-7", pid=ended_pid())  # the pid means nothing here
    assert run_lock.holder(tmp_path / "run").host == "node-7"
    old = time.time() - run_lock.STALE_S - 5
    os.utime(path, (old, old))  # no heartbeat since STALE_S: the node was lost
    assert run_lock.holder(tmp_path / "run") is None
    with run_lock.acquire(tmp_path / "run") as lock:
        assert lock.took_over.host == "node-7"


def test_the_heartbeat_keeps_a_long_run_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock, "HEARTBEAT_S", 0.05)
    with run_lock.acquire(tmp_path / "run") as lock:
        old = time.time() - 1000
        os.utime(lock.path, (old, old))
        time.sleep(0.5)
        assert time.time() - lock.path.stat().st_mtime < 5


def test_a_lock_that_is_not_json_is_stale(tmp_path):
    (tmp_path / "run").mkdir()
    run_lock.lock_path(tmp_path / "run").write_text("half")
    with run_lock.acquire(tmp_path / "run"):
        assert run_lock.holder(tmp_path / "run").pid == os.getpid()


# --- the processes that reach a held run ------------------------------------------------------------

@pytest.fixture
def project(tmp_path):
    root = new_project(tmp_path, {"locked": TEACHER % 2})
    for _ in working_in(root):
        yield root


def test_dapt_run_and_the_runner_leave_a_held_run_alone(project, capsys):
    """A run held by another live process: `dapt run` refuses in one line before anything runs, and
    ``run_one`` (what the local executor and each Ray task call) returns ``held`` without touching it."""
    from dapt.pipeline.runner import run_one
    from dapt.pipeline.study import load_study

    folder = project / "runs/locked/t"
    holder = hold(folder)
    try:
        before = snapshot(project / "runs")
        assert main(["run", "params/locked.yaml", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"run 't' is being executed by pid {holder.pid} on " in err and "wait for it to end" in err
        outcome = run_one(load_study("params/locked.yaml").get("t"), log_output=False)
        assert outcome.status == "held" and f"pid {holder.pid}" in outcome.reason
        assert snapshot(project / "runs") == before

        assert main(["status", "params/locked.yaml"]) == 0
        assert f"executing: pid {holder.pid} on " in capsys.readouterr().out
    finally:
        holder.kill()
        holder.wait()


def test_the_explorer_leaves_a_held_run_alone(project):
    from dapt.core.errors import DaptError
    from dapt.ui import explore

    holder = hold(project / "runs/locked/clicked")
    try:
        before = snapshot(project / "runs")
        with pytest.raises(DaptError, match=f"run 'clicked' is being executed by pid {holder.pid}"):
            explore.execute("params/locked.yaml", "teacher", "clicked",
                            {"model": "resnet18", "init": "fr", "epochs": 1}, echo=lambda line: None)
        assert snapshot(project / "runs") == before
    finally:
        holder.kill()
        holder.wait()


def test_a_run_taken_between_the_plan_and_its_start_is_held_not_executed(project, capsys):
    """Two runners that plan at the same moment: the lock, not the plan, decides who executes. The
    loser settles the run ``held``, stops the study there, and changes none of its files."""
    from dapt.pipeline.runner import plan, run_locally
    from dapt.pipeline.schedule import Schedule
    from dapt.pipeline.study import load_study

    states = plan(load_study("params/locked.yaml"))
    holder = hold(project / "runs/locked/t")
    try:
        before = snapshot(project / "runs")
        schedule = Schedule(states)
        run_locally(schedule, log_output=False)
        assert schedule.results == {"t": "held"}
        assert f"t: not executed: run runs/locked/t is being executed by pid {holder.pid}" in capsys.readouterr().out
        assert snapshot(project / "runs") == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_two_dapt_runs_of_one_study_never_execute_a_run_twice(tmp_path):
    """Started seconds apart, and started together: one process executes the run, the other leaves it
    alone and says who holds it; the run ends done with its record whole."""
    root = new_project(tmp_path, {"locked": TEACHER % 3})
    folder = root / "runs/locked/t"
    first = dapt_run(root)
    deadline = time.time() + 120
    while not run_lock.lock_path(folder).exists():
        assert time.time() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.1)
    second = dapt_run(root)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2 and err.count("\n") == 1, err
    assert f"run 't' is being executed by pid {first.pid} on " in err
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "done" and [e["epoch"] for e in metrics["history"]] == [1, 2, 3]
    assert not run_lock.lock_path(folder).exists()

    together = [dapt_run(root, "--force"), dapt_run(root, "--force")]
    ended = [process.communicate(timeout=300) for process in together]
    executed = [out.count("t: done in") for out, _ in ended]
    assert sorted(executed) == [0, 1], ended
    loser = executed.index(0)
    assert together[loser].returncode in (1, 2), ended[loser]  # refused at its plan (2), or at the lock (1)
    assert f"is being executed by pid {together[1 - loser].pid} on " in "".join(ended[loser])
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "done" and len(metrics["history"]) == 3


@pytest.mark.slow
def test_a_lock_left_by_kill_9_is_taken_over_by_resume(tmp_path, capsys):
    root = new_project(tmp_path, {"locked": TEACHER % 3})
    folder = root / "runs/locked/t"
    process = dapt_run(root)
    deadline = time.time() + 180
    while not (folder / "last.pt").is_file():
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)
    for pid in [*descendants(process.pid), process.pid]:  # the kernel too: a power cut leaves nothing running
        os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)
    left = json.loads(run_lock.lock_path(folder).read_text())
    assert left["pid"] == process.pid, "the killed process's lock is left behind"
    assert json.loads((folder / "metrics.json").read_text())["status"] == "running"

    for _ in working_in(root):
        assert main(["status", "params/locked.yaml"]) == 0
        assert "its process is gone; dapt run --resume continues it" in capsys.readouterr().out
        assert main(["run", "params/locked.yaml", "--quiet", "--resume"]) == 0
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "done" and [e["epoch"] for e in metrics["history"]] == [1, 2, 3]
    assert not run_lock.lock_path(folder).exists()
