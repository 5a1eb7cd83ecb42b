"""Progress bars (``dapt.core.progress``): drawn where someone watches, absent from a recorded run's output,
whose epoch lines stay (``test_pipeline`` checks the executed notebooks of ``dapt run``)."""
from __future__ import annotations

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

