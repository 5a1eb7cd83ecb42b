"""What the suite builds once for the whole session: the digits subset most tests train on, a ResNet-18 teacher
trained in this process, and a teacher run executed by `dapt run` (papermill) that studies of other test modules
read instead of training the same teacher again.

A test that reads them must not change them: copy a run folder (``shared_teacher_into``) before running a study
beside it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from projects import new_project, working_in

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
    """``runs/shared/teacher`` of a project where `dapt run` executed the teacher notebook (``SHARED_TEACHER``)."""
    from dapt.cli import main

    root = new_project(tmp_path_factory.mktemp("shared"), {"shared": SHARED_TEACHER})
    for _ in working_in(root):
        assert main(["run", "params/shared.yaml", "--quiet"]) == 0
    return root / "runs" / "shared" / "teacher"


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
