"""Parameters as dataclass fields that carry their own help, valid values and range.

Every parameter a params file may set is declared once: a stage's with ``param(...)`` in its
config (``dapt.pipeline.config``), a distiller's knobs and loss weights in its declaration
(``dapt.distillers.catalog``), from which ``dapt.distillers.settings`` makes the fields. The
metadata is what ``dapt params``, validation, the widgets and the notebooks' generated parameters
cells (``dapt docs``) read, so there is no second table of help texts or choices to keep in step.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

from dapt.core.errors import DaptError
from dapt.core.registry import Registry

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
          study_wide: bool = True, knob: bool = False, section: Optional[str] = None) -> Any:
    """A dataclass field with its help text, its valid values (a list, or a registry's ``names``)
    and the range its value must lie in (checked unless the value is None). ``study_wide=False``: the
    key means something else here than in the other stages (a generate run's ``batch_size``), so a
    study's ``defaults`` do not set it; only the run itself does. ``knob``: a number worth turning
    between runs, which the explorer offers. ``section``: the title of the group of parameters this
    one opens in a notebook's parameters cell."""
    return field(default=default, metadata={"help": help, "choices": choices, "rule": rule, "study_wide": study_wide,
                                            "knob": knob, "section": section})


def reference(help: str, stage: str, section: Optional[str] = None) -> Any:
    """A field naming another run of the study (or a run folder); ``dapt run`` orders runs by it."""
    return field(default=None, metadata={"help": help, "choices": None, "rule": None, "ref": stage, "section": section})


def help_of(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")


def choices_of(f: dataclasses.Field) -> list[str] | None:
    """The valid values of ``f`` now (a registry's names are read when asked, so late registrations count)."""
    choices = f.metadata.get("choices")
    return list(choices() if callable(choices) else choices) if choices else None


def registry_of(f: dataclasses.Field) -> Registry | None:
    """The registry whose names are the valid values of ``f``, if they are one's."""
    registry = getattr(f.metadata.get("choices"), "__self__", None)
    return registry if isinstance(registry, Registry) else None


def is_knob(f: dataclasses.Field) -> bool:
    return f.metadata.get("knob", False)


def section_of(f: dataclasses.Field) -> str | None:
    return f.metadata.get("section")


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
