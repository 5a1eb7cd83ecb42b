"""Pinned numbers: a tiny teacher and kd student on digits, executed with `dapt run`, give exactly the numbers
committed in tests/pinned/digits_kd.json on the kind of machine that measured them (the same torch,
torchvision, CPU model and precision flags); elsewhere the test skips and says what differs.

A change that moves training numerics (a loss, an init, an augmentation, a kernel's precision) fails here and
must say so in its commit message and update the pin (tests/pinned/update.py; docs/reliability.md).
"""
from __future__ import annotations

import pytest

from pinned import update

pytestmark = pytest.mark.slow  # executes the teacher and the student notebooks


def test_the_pinned_study_gives_the_pinned_numbers_exactly(tmp_path):
    pin = update.read_json(update.PIN)
    differences = update.machine_differences(pin["machine"])
    if differences:
        pytest.skip(f"{update.PIN.name} was measured on another kind of machine ({'; '.join(differences)}): "
                    f"its numbers are a promise for that kind only")
    assert pin["study"] == update.STUDY.strip() and pin["threads"] == update.THREADS, (
        f"the pinned study changed since it was measured: update the pin with `{update.UPDATE}`")
    moved = update.moved(pin["numbers"], update.measure(tmp_path))
    assert not moved, (
        f"training numbers moved from {update.PIN.name} (measured at {pin['measured']['commit'][:7]}):\n  "
        + "\n  ".join(moved) + f"\na change that moves training numerics must say so in its commit message and "
        f"update the pin with `{update.UPDATE}`")
