"""Progress bars (``dapt.core.progress``): drawn where someone watches, absent from a recorded run's output,
whose epoch lines stay (``test_pipeline`` checks the executed notebooks of ``dapt run``)."""
from __future__ import annotations

import os
import subprocess
import sys

from dapt.core import progress as P


def test_a_recorded_run_draws_no_bar_but_keeps_its_lines(monkeypatch, capsys):
    monkeypatch.setenv(P.ENV, "off")
    bar = P.progress(range(3), desc="training", mininterval=0)
    assert list(bar) == [0, 1, 2]
    bar.write("epoch 1: train_loss 0.5000")
    bar.close()
    assert capsys.readouterr().out == "epoch 1: train_loss 0.5000\n"


def test_outside_a_recorded_run_the_bar_shows(monkeypatch, capsys):
    monkeypatch.delenv(P.ENV, raising=False)
    with P.progress(total=2, desc="teacher targets", mininterval=0) as bar:
        bar.update(2)
    out = capsys.readouterr().out
    assert "teacher targets" in out and "2/2" in out



def test_tqdm_disable_in_the_environment_turns_every_bar_off():
    """A user's (or benchmarks/gpu_check.sh's) TQDM_DISABLE=1 holds, also where a caller passes disable=False
    (tqdm reads its environment when it is imported: a process of its own)."""
    code = ("from dapt.core.progress import progress\n"
            "with progress(total=2, desc='teacher targets', mininterval=0, disable=False) as bar:\n"
            "    bar.update(2)\n")
    env = {k: v for k, v in os.environ.items() if k != P.ENV} | {"TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout == "" and done.stderr == ""
