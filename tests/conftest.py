"""What the suite builds once for the whole session: the digits subset most tests train on, a ResNet-18 teacher
trained in this process, and a teacher run executed by `dapt run` (papermill) that studies of other test modules
read instead of training the same teacher again.

A test that reads them must not change them: copy a run folder (``shared_teacher_into``) before running a study
beside it.

The suite runs on every core (pytest-xdist, ``-n auto --dist loadscope`` in pyproject.toml: a module's tests and its
module fixtures stay on one worker). Workers share the teacher run (built by the first worker that asks, under a file
lock), split the cores' threads between them, and start the modules that execute whole studies first, so that the
workers finish together. ``pytest -n 0`` runs everything in this one process (for a debugger).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from projects import new_project, working_in

WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... under pytest-xdist; None in a single process
if WORKER and "OMP_NUM_THREADS" not in os.environ:  # before torch is imported, and inherited by every kernel
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(max(1, cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

# Modules that execute whole studies (notebooks, torchrun, Ray, killed runs), about a minute or more each: first.
STUDIES_FIRST = ("test_ray", "test_distributed", "test_pipeline", "test_explore", "test_locks")

# The teacher of the suite's tiny studies: digits at 16 px, 300 images, 2 epochs. Studies name it
# runs/shared/teacher (outside their own folder, like a teacher of another study).
SHARED_TEACHER = """
study: shared
defaults: {dataset: digits, image_size: 16, train_subset: 300, epochs: 2, batch_size: 50}
runs:
  - {stage: teacher, name: teacher, model: resnet18, init: fr, optimizer: sgd, lr: 0.05}
"""


@pytest.fixture(scope="session")
def digits():
    """Digits at 16 px: 300 training images, 100 validation images (a module may define its own)."""
    from dapt.data.imageset import load_dataset

    return load_dataset("digits", 16, train_subset=300, seed=0, validation=100)


@pytest.fixture(scope="session")
def trained_teacher(tmp_path_factory, digits):
    """A ResNet-18 trained in this process on ``digits`` for 3 epochs (its run folder, and ``digits``): a teacher
    whose outputs mean something."""
    from dapt.core import records
    from dapt.pipeline import config
    from dapt.stages.teacher import train_teacher

    folder = tmp_path_factory.mktemp("teacher")
    cfg = config.validate(config.TeacherConfig, {
        "dataset": "digits", "image_size": 16, "train_subset": 300, "batch_size": 50, "precise_bn": None,
        "device": "cpu", "model": "resnet18", "init": "fr", "epochs": 3, "lr": 3e-3, "run_dir": str(folder)})
    record = records.RunRecord.start(folder, "teacher", config.as_dict(cfg))
    train_teacher(cfg, digits, record)
    record.finish()
    return folder, digits


@pytest.fixture(scope="session")
def shared_teacher_run(tmp_path_factory) -> Path:
    """``runs/shared/teacher`` of a project where `dapt run` executed the teacher notebook (``SHARED_TEACHER``): one
    for the whole session, whichever worker asks first."""
    from dapt.cli import main

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if WORKER else base) / "shared"  # the parent is every worker's
    teacher = root / "runs" / "shared" / "teacher"
    with FileLock(root.with_suffix(".lock")):
        if not (teacher / "model.pt").is_file():
            shutil.rmtree(root, ignore_errors=True)  # a worker that failed to build it left this
            new_project(root, {"shared": SHARED_TEACHER})
            for _ in working_in(root):
                assert main(["run", "params/shared.yaml", "--quiet"]) == 0
    return teacher


@pytest.fixture(scope="session")
def shared_teacher_into(shared_teacher_run):
    """Copies the shared teacher run into a project's ``runs/shared/teacher``, where its studies read it (once: a
    project that has it keeps its copy, and the cache its students built there)."""
    def copy(root: Path) -> Path:
        target = root / "runs" / "shared" / "teacher"
        if not target.exists():
            shutil.copytree(shared_teacher_run, target)
        return target
    return copy


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def heavy_first(item: pytest.Item) -> int:
        name = item.module.__name__ if item.module else ""
        return STUDIES_FIRST.index(name) if name in STUDIES_FIRST else len(STUDIES_FIRST)
    items.sort(key=heavy_first)  # stable: each module's tests keep their order


@pytest.fixture(scope="session")
def without_onednn():
    """A context in which the CPU convolutions are PyTorch's own, not oneDNN's, for the tests that train in
    bf16: on CPUs with native bf16 (AMX), torch 2.14.1's oneDNN now and then returns NaN in a bf16 convolution's
    weight gradient (about one 3-epoch ResNet-18 training in 8, single-threaded too; docs/scale.md). Those tests
    judge dapt's bf16 path, not that kernel. Session-scoped so that module fixtures can use it too."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def context():
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch.backends.mkldnn, "enabled", False)
            yield

    return context
