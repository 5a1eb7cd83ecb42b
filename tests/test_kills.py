"""Kills while a record is being written: the next run trusts no half-written file and loses no
finished one. The writers run in their own processes and are really killed with SIGKILL (a whole
`dapt run` too, mid-run and mid-epoch)."""
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
import torch

from dapt.core import records as runs
from dapt.core import files
from dapt.training.checkpoint import save_model
from dapt.cli import main
from dapt.data.augment import make_views
from dapt.models.nets import create_model
from dapt.training.teacher_cache import TeacherTargets
from projects import descendants, new_project, working_in

REPO = Path(__file__).resolve().parents[1]


def python(script: str, *args: str) -> subprocess.Popen:
    """``script`` in a fresh interpreter that imports this tree's dapt; its stdout unbuffered, piped."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-u", "-c", textwrap.dedent(script), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_output(process: subprocess.Popen, marker: str, timeout: float = 120) -> str:
    """Read the child's stdout (tqdm ends its lines with \\r, so byte by byte) until ``marker`` shows."""
    seen, deadline = b"", time.time() + timeout
    while marker.encode() not in seen:
        chunk = os.read(process.stdout.fileno(), 256)
        assert chunk and time.time() < deadline, f"no {marker!r} from the child: {seen!r} {process.stderr.read()!r}"
        seen += chunk
    return seen.decode(errors="replace")


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


# --- the teacher cache ---------------------------------------------------------------------------

BUILD_TARGETS = """
    import sys, torch
    from pathlib import Path
    from dapt.training.checkpoint import load_model
    from dapt.data.augment import make_views
    from dapt.training.teacher_cache import TeacherTargets

    teacher, _ = load_model(sys.argv[1])
    images = torch.load(sys.argv[2], weights_only=True)
    views = make_views(len(images), 16, int(sys.argv[3]), 0, True)
    TeacherTargets(teacher, 16, images, views, cache_dir=Path(sys.argv[4]), key_parts=("key",), channels_last=False)
"""


def targets(teacher, images, views: int, cache_dir: Path | None) -> TeacherTargets:
    return TeacherTargets(teacher, 16, images, make_views(len(images), 16, views, 0, True), cache_dir=cache_dir,
                          key_parts=("key",), channels_last=False)


@pytest.mark.slow  # a fresh interpreter imports torch and the models, then builds
def test_a_kill_during_the_teacher_cache_build_costs_only_the_view_in_progress(tmp_path, capsys):
    """SIGKILL a process while it computes a teacher cache of 10 views: the views it finished are complete
    cache files, the one in progress left only temp files (which no reader opens), the finished cache of
    a 1-view run stays byte for byte and is reused, and the next 10-view build computes only the views
    still missing and deletes those temps. A file torn at a cache name (which the atomic rename never
    produces, but a copy tool could) is rebuilt, not read."""
    teacher = create_model("resnet18", 10, image_size=16).eval()
    save_model(tmp_path / "model.pt", teacher, {"model": "resnet18", "num_classes": 10, "image_size": 16})
    images = torch.randint(0, 256, (2000, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.save(images, tmp_path / "images.pt")
    cache = tmp_path / "cache"
    finished = targets(teacher, images, 1, cache)
    finished_files = {p: p.read_bytes() for p in cache.iterdir()}
    assert len(finished_files) == 2  # view 0: logits and features

    builder = python(BUILD_TARGETS, str(tmp_path / "model.pt"), str(tmp_path / "images.pt"), "10", str(cache))
    wait_for_output(builder, "teacher targets")  # the bar is up: views 1-9 of 2,000 images to compute
    def temps_and_finished() -> tuple[list[Path], int]:
        names = list(cache.iterdir())
        temps = [p for p in names if p.name.startswith(".") and p.name.endswith(".tmp")]
        return temps, len([p for p in names if not p.name.startswith(".")])

    deadline = time.time() + 120
    while time.time() < deadline:  # until view 1 is finished and view 2's temps are open while it computes
        temps, finished_count = temps_and_finished()
        if finished_count >= 4 and temps:
            break
        time.sleep(0.05)
    kill(builder)
    temps, _ = temps_and_finished()
    assert 1 <= len(temps) <= 2, f"the killed build must leave the temps of one view at most: {temps}"
    capsys.readouterr()

    reused = targets(teacher, images, 1, cache)
    assert "teacher targets: reusing" in capsys.readouterr().out
    everything = torch.arange(2000)
    assert {p: p.read_bytes() for p in finished_files} == finished_files
    assert torch.equal(reused.get(0, everything)[0], finished.get(0, everything)[0])

    rebuilt = targets(teacher, images, 10, cache)
    out = capsys.readouterr().out
    assert " of 10 views" in out and "cached in" in out and " 9 of 10 " not in out, "finished views were rebuilt"
    assert not any(p.exists() for p in temps), "the next build deletes the temp files of the killed one"
    live = targets(teacher, images, 10, None)
    index = torch.arange(0, 2000, 70)
    for view in (0, 9):
        want_logits, want_features = live.get(view, index)
        got_logits, got_features = rebuilt.get(view, index)
        torch.testing.assert_close(got_logits, want_logits.half().float())  # stored in fp16
        bound = want_features.abs().amax(dim=1, keepdim=True) / 254  # int8 with a per-row scale
        assert (got_features - want_features).abs().le(bound * (1 + 1e-6)).all()

    torn, whole = next(iter(finished_files.items()))
    torn.write_bytes(whole[: len(whole) // 2])
    targets(teacher, images, 1, cache)
    assert "1 of 1 views" in capsys.readouterr().out, "a torn cache file was trusted"
    assert torn.read_bytes() == whole, "the torn file was not replaced by the same cache"


# --- a whole `dapt run` -------------------------------------------------------------------------

# the teacher: the session's (conftest.SHARED_TEACHER), a teacher of another study
KILLABLE = """
study: killable
defaults: {dataset: digits, image_size: 16, train_subset: 300, batch_size: 50, seed: 3}
runs:
  - {stage: distill, name: crd_straight, student: mobilenet_v2, teacher: runs/shared/teacher, distiller: crd, crd_k: 64, epochs: 4}
  - {stage: distill, name: crd_killed, student: mobilenet_v2, teacher: runs/shared/teacher, distiller: crd, crd_k: 64, epochs: 4}
  - {stage: distill, name: crd_mid_epoch, student: mobilenet_v2, teacher: runs/shared/teacher, distiller: crd, crd_k: 64, epochs: 4,
     checkpoint_every: 2}
"""


@pytest.fixture(scope="module")
def killable(tmp_path_factory, shared_teacher_into):
    """A project holding ``KILLABLE`` and a copy of the session's teacher, for `dapt run`s that are killed."""
    root = new_project(tmp_path_factory.mktemp("killable"), {"killable": KILLABLE})
    shared_teacher_into(root)
    for _ in working_in(root):
        yield root


def start_killable(project: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "DAPT_ROOT": str(project), "WANDB_MODE": "disabled"}
    return subprocess.Popen([sys.executable, "-m", "dapt.cli", "run", "params/killable.yaml", "--quiet", *args],
                            cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def comparable(metrics_file: Path) -> dict:
    record = json.loads(metrics_file.read_text())
    for key in ("wall_time_s", "params", "provenance"):  # provenance: the date each execution started
        record.pop(key)
    return record


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_result(killable):
    """Kill `dapt run` (and so its kernel) after an epoch checkpoint, resume, and compare with a run
    that was never interrupted: the same numbers, because last.pt holds model, distiller (CRD banks
    and sampler), optimizer, scheduler and the global RNG, and every epoch's batches and views
    come from generators seeded by (seed, epoch)."""
    project = killable
    assert main(["run", "params/killable.yaml", "--quiet", "--only", "crd_straight"]) == 0
    process = start_killable(project, "--only", "crd_killed")
    folder = project / "runs/killable/crd_killed"
    deadline = time.time() + 120
    while time.time() < deadline and not (folder / "last.pt").is_file():
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed"
    process.kill()  # SIGKILL: nothing runs on the way out; the kernel exits when its parent is gone
    process.wait(timeout=30)
    time.sleep(2)
    killed = json.loads((folder / "metrics.json").read_text())
    assert killed["status"] == "running" and len(killed["history"]) < 4, "the kill came too late to test resume"

    assert main(["run", "params/killable.yaml", "--quiet", "--only", "crd_killed", "--resume"]) == 0
    assert comparable(folder / "metrics.json") == comparable(project / "runs/killable/crd_straight/metrics.json")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_result(killable):
    """checkpoint_every: 2 (6 steps per epoch): wait for a mid-epoch last.pt, SIGKILL the kernel and
    `dapt run` at once, resume: the run skips the batches done and restores the epoch's sums, so its
    metrics.json equals, exactly, that of the run never interrupted (which wrote no mid-epoch checkpoints).
    Exactly, not within a tolerance: on CPU every operation here is deterministic run to run."""
    from dapt.core.torch_files import safe_load

    project = killable
    assert main(["run", "params/killable.yaml", "--quiet", "--only", "crd_straight"]) == 0
    process = start_killable(project, "--only", "crd_mid_epoch")
    last = project / "runs/killable/crd_mid_epoch/last.pt"
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        if last.is_file() and safe_load(last)["step"] > 0:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    for pid in [*descendants(process.pid), process.pid]:  # the kernel first: it is the one writing
        os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)
    state = safe_load(last)
    assert state["step"] > 0 and state["epoch"] < 4, "the kill came too late to land mid-epoch"
    folder = last.parent
    assert json.loads((folder / "metrics.json").read_text())["status"] == "running"

    assert main(["run", "params/killable.yaml", "--quiet", "--only", "crd_mid_epoch", "--resume"]) == 0
    assert comparable(folder / "metrics.json") == comparable(project / "runs/killable/crd_straight/metrics.json")


# --- metrics.json ----------------------------------------------------------------------------------

REWRITE_RECORD = """
    import json, sys
    from dapt.core.records import RunRecord

    record = RunRecord.start(sys.argv[1], "teacher", json.loads(sys.argv[2]))
    print("started", flush=True)
    blob = "x" * 30_000_000  # a large record: each write of metrics.json takes a while
    for step in range(1, 10_000):
        record.update(step=step, blob=blob)
"""

STUDY = "study: s\nruns: [{stage: teacher, name: finished, model: resnet18, init: fr, dataset: digits},\n" \
        "       {stage: teacher, name: written, model: resnet18, init: fr, dataset: digits}]\n"


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "s.yaml").write_text(STUDY)
    monkeypatch.setenv("DAPT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_kill_during_a_metrics_write_leaves_the_last_whole_record(project, capsys):
    """SIGKILL a process while it writes a large metrics.json. metrics.json is written to a temp file
    that is renamed onto it, so a kill can only leave that temp file half-written, never a partial
    metrics.json: readers see the last whole record, `dapt status` shows both runs, the finished run
    is untouched, and the next write of the record deletes the dead writer's temp file. (A metrics.json
    torn at its own name cannot come from a kill; if one appears, e.g. copied half, it is not trusted:
    the run counts as new and is executed again.)"""
    from dapt.pipeline.study import load_study

    study = load_study("params/s.yaml")
    finished = study.get("finished")
    record = runs.RunRecord.start(finished.folder, "teacher", finished.params)
    save_model(finished.folder / "model.pt", create_model("resnet18", 10, image_size=8),
               {"model": "resnet18", "num_classes": 10, "image_size": 8})
    record.finish(test_acc=0.5)
    finished_before = (finished.folder / "metrics.json").read_bytes()

    folder = project / "runs/s/written"
    for attempt in range(10):  # a kill between two writes leaves no temp file: try again
        writer = python(REWRITE_RECORD, str(folder), json.dumps(study.get("written").params))
        wait_for_output(writer, "started")
        deadline = time.time() + 60
        while not [t for t in folder.glob(".metrics.json.*.tmp") if t.stat().st_size > 0]:
            assert time.time() < deadline, "the writer never wrote"
        kill(writer)
        torn = list(folder.glob(".metrics.json.*.tmp"))
        if torn:
            break
    assert torn, "ten kills all landed between two writes"
    assert str(writer.pid) in torn[0].name
    metrics = files.read_json(folder / "metrics.json")
    assert metrics is not None and metrics["status"] == "running"
    assert "blob" not in metrics or len(metrics["blob"]) == 30_000_000, "a partial record was published"

    assert main(["status", "params/s.yaml"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[2:-1]] == [["finished", "teacher", "done"], ["written", "teacher", "running"]]
    assert lines[-1].strip().startswith("provenance: 2 runs at ")  # the torn write left the running record's provenance
    assert (finished.folder / "metrics.json").read_bytes() == finished_before

    runs.mark_status(folder, "interrupted")  # what the runner writes next: the dead writer's temp file goes
    assert not list(folder.glob(".metrics.json.*.tmp"))
    assert files.read_json(folder / "metrics.json")["status"] == "interrupted"

    (folder / "metrics.json").write_text('{"status": "done", "history": [{"epo')
    assert main(["status", "params/s.yaml"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[2:-1]] == [["finished", "teacher", "done"], ["written", "teacher", "new"]]
    assert lines[-1].strip().startswith("provenance: 1 run at ")  # the torn record is no record


def test_a_live_writer_keeps_its_temp_file_and_a_dead_one_loses_it(tmp_path):
    target = tmp_path / "last.pt"
    live = tmp_path / f".last.pt.{os.getpid()}.abcd1234.tmp"
    ended = subprocess.Popen(["true"])
    ended.wait()  # reaped: no process has its pid now
    dead_pid = ended.pid
    dead = tmp_path / f".last.pt.{dead_pid}.wxyz0000.tmp"
    other = tmp_path / f".model.pt.{dead_pid}.wxyz0000.tmp"
    for path in (live, dead, other):
        path.write_bytes(b"half a checkpoint")
    assert files.remove_stale_temps(target) == [dead]
    assert live.exists() and other.exists()


def test_a_fresh_start_forgets_the_resume_checkpoint_of_an_earlier_attempt(tmp_path):
    """Otherwise a fresh run killed before its first checkpoint would be resumed from the old attempt's state."""
    runs.RunRecord.start(tmp_path / "run", "teacher", {"epochs": 1})
    (tmp_path / "run" / "last.pt").write_bytes(b"an earlier attempt")
    runs.RunRecord.start(tmp_path / "run", "teacher", {"epochs": 1}, resume=True)
    assert (tmp_path / "run" / "last.pt").exists()
    runs.RunRecord.start(tmp_path / "run", "teacher", {"epochs": 1})
    assert not (tmp_path / "run" / "last.pt").exists()
