"""Parameters as dataclass fields that carry their own help, valid values and range.

Every parameter a params file may set is declared once, with ``param(...)``, in the module
that uses it (training settings in ``config``, a distiller's knobs in its own module). The
metadata is what ``dapt params``, validation and the widgets read, so there is no second table
of help texts or choices to keep in step.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

from dapt.core.errors import DaptError

Choices = Union[Sequence[str], Callable[[], Sequence[str]], None]


@dataclass(frozen=True)
class Rule:
    """A range a numeric value must lie in, with the words that describe it in an error."""

    check: Callable[[Any], bool]
    text: str


POSITIVE = Rule(lambda v: math.isfinite(v) and v > 0, "> 0")
NON_NEGATIVE = Rule(lambda v: math.isfinite(v) and v >= 0, ">= 0")
AT_LEAST_ONE = Rule(lambda v: v >= 1, ">= 1")
FRACTION = Rule(lambda v: 0 <= v < 1, "in [0, 1)")


def param(default: Any, help: str, *, choices: Choices = None, rule: Optional[Rule] = None,
          study_wide: bool = True) -> Any:
    """A dataclass field with its help text, its valid values (a list, or a registry's ``names``)
    and the range its value must lie in (checked unless the value is None). ``study_wide=False``: the
    key means something else here than in the other stages (a generate run's ``batch_size``), so a
    study's ``defaults`` do not set it; only the run itself does."""
    return field(default=default, metadata={"help": help, "choices": choices, "rule": rule, "study_wide": study_wide})


def reference(help: str, stage: str) -> Any:
    """A field naming another run of the study (or a run folder); ``dapt run`` orders runs by it."""
    return field(default=None, metadata={"help": help, "choices": None, "rule": None, "ref": stage})


def help_of(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")


def choices_of(f: dataclasses.Field) -> list[str] | None:
    """The valid values of ``f`` now (a registry's names are read when asked, so late registrations count)."""
    choices = f.metadata.get("choices")
    return list(choices() if callable(choices) else choices) if choices else None


def rule_of(f: dataclasses.Field) -> Rule | None:
    return f.metadata.get("rule")


def study_wide(f: dataclasses.Field) -> bool:
    return f.metadata.get("study_wide", True)


def check_ranges(obj: Any) -> None:
    """Raise ``DaptError`` for the first field of dataclass ``obj`` whose value (not None) is
    out of its rule's range, e.g. ``kd_T=-1 must be > 0``."""
    for f in dataclasses.fields(obj):
        rule, value = rule_of(f), getattr(obj, f.name)
        if rule is None or value is None:
            continue
        try:
            ok = not isinstance(value, bool) and bool(rule.check(value))
        except TypeError:  # a string or list where a number belongs
            ok = False
        if not ok:
            raise DaptError(f"{f.name}={value!r} must be {rule.text}")
