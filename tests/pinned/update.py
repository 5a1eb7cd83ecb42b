"""Pinned numbers: a tiny study on digits (a resnet18 teacher, a kd student) whose final numbers and per-epoch
training losses are committed in ``digits_kd.json``, with the machine they were measured on, and compared
exactly by ``tests/test_pinned.py``.

Run as a script, ``python tests/pinned/update.py`` executes the study twice in throwaway project folders,
refuses to pin numbers that differ between the two, and rewrites ``digits_kd.json``, saying which numbers
moved. A change that moves training numerics says so in its commit message and commits the new pin.

The study is made deterministic: CPU, float32 throughout (``amp: off``, ``teacher_amp: off``), fixed seeds,
and one torch thread (two threads split sums differently and give other numbers).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # as a script: projects.py sits beside the tests
    sys.path.insert(0, str(TESTS))

from projects import new_project  # noqa: E402
from dapt.core import provenance  # noqa: E402
from dapt.core.files import atomic_write_json, read_json  # noqa: E402

PIN = Path(__file__).with_name("digits_kd.json")
NAME = "digits_kd"
THREADS = 1
STUDY = """
study: digits_kd
defaults: {dataset: digits, image_size: 16, train_subset: 300, eval_subset: 100, epochs: 3, batch_size: 50,
           device: cpu, amp: "off", seed: 0, optimizer: sgd, lr: 0.05}
runs:
  - {stage: teacher, name: teacher, model: resnet18, init: fr}
  - {stage: distill, name: kd, student: mobilenet_v2, teacher: teacher, distiller: kd, teacher_amp: "off"}
"""
# The final numbers pinned per run; per epoch, every training loss of the history (train_loss, loss_<term>).
FINAL = {"teacher": ("test_acc", "best_val_acc"),
         "kd": ("test_acc", "teacher_test_acc", "agreement", "kl", "ece", "cka", "best_val_acc")}
UPDATE = "python tests/pinned/update.py"


def machine() -> dict[str, Any]:
    """What the numbers depend on besides the code: torch and torchvision (kernels, the models' init), the CPU
    model and its precision flags (which kernels run)."""
    return {"torch": provenance.library_version("torch"), "torchvision": provenance.library_version("torchvision"),
            "cpu_model": provenance.cpu_model(), "cpu_flags": list(provenance.cpu_flags())}


def measure(root: Path) -> dict[str, dict[str, Any]]:
    """Execute the study as a user does (``python -m dapt run``, papermill kernels) in a new project under
    ``root``, with one torch thread, and return its pinned numbers as its metrics.json files record them."""
    project = new_project(root, {NAME: STUDY})
    threads = str(THREADS)
    env = {**os.environ, "DAPT_ROOT": str(project), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads}
    done = subprocess.run([sys.executable, "-m", "dapt", "run", f"params/{NAME}.yaml", "--quiet"], cwd=project,
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the pinned study did not finish (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return {run: numbers(read_json(project / "runs" / NAME / run / "metrics.json"), keys) for run, keys in FINAL.items()}


def numbers(metrics: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``keys`` of a run's record, then each training loss of its history as a list over epochs."""
    history = metrics["history"]
    losses = [key for key in history[0] if key == "train_loss" or key.startswith("loss_")]
    return {**{key: metrics[key] for key in keys}, **{key: [epoch[key] for epoch in history] for key in losses}}


def moved(pinned: dict[str, dict[str, Any]], measured: dict[str, dict[str, Any]]) -> list[str]:
    """One line per number that differs (``kd.kl: 0.679929 pinned, 0.68 now``; per epoch ``kd.loss_kd[epoch
    2]``), a number only one side has included."""
    lines = []
    for run in {**pinned, **measured}:
        before, now = pinned.get(run, {}), measured.get(run, {})
        for key in {**before, **now}:
            old, new = before.get(key), now.get(key)
            if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
                lines += [f"{run}.{key}[epoch {epoch}]: {a} pinned, {b} now"
                          for epoch, (a, b) in enumerate(zip(old, new), 1) if a != b]
            elif old != new:
                lines.append(f"{run}.{key}: {old} pinned, {new} now")
    return lines


def machine_differences(pinned: dict[str, Any]) -> list[str]:
    """What of ``machine()`` differs from the pin's (``torch 2.5.1 pinned, 2.6.0 here``)."""
    here = machine()
    return [f"{key} {pinned.get(key)} pinned, {here[key]} here" for key in here if pinned.get(key) != here[key]]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dapt-pin-") as tmp:
        first, second = measure(Path(tmp) / "first"), measure(Path(tmp) / "second")
    if first != second:
        print("not pinned: two executions on this machine gave different numbers:\n  "
              + "\n  ".join(moved(first, second)), file=sys.stderr)
        return 1
    previous = read_json(PIN)
    now = provenance.collect()  # for the reader: which code, when; only machine() decides whether the pin applies
    atomic_write_json(PIN, {"study": STUDY.strip(), "threads": THREADS, "machine": machine(),
                            "measured": {key: now[key] for key in ("commit", "dirty", "python", "date")},
                            "numbers": first})
    changes = moved(previous["numbers"], first) if previous else ["(no previous pin)"]
    print(f"{PIN.relative_to(TESTS.parent)} rewritten; numbers that moved:\n  " + ("\n  ".join(changes) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
