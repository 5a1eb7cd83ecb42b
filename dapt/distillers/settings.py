"""Every distiller knob a params file may set, as one torch-free dataclass a run's config inherits,
built from the distillers' declarations (``catalog.declare_distiller``).

Its fields, in order: ``w_<term>`` for every declared loss term (null keeps the distiller's default
weight), ``distill_warmup``, the shared knob groups (``catalog.SHARED``) and each distiller's own
knobs. Each field carries its help, choices and range (``dapt.core.fields.param``), its help naming
the distillers that read it; the implementations read them by attribute from the run's config.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Optional

from dapt.core.errors import DaptError
from dapt.core.fields import NON_NEGATIVE, check_ranges, param, registry_of
from dapt.distillers.catalog import SHARED, DistillerDeclaration, Setting, seal

_DEFAULT = " (null = the distiller's default)"
Declarations = list[tuple[str, DistillerDeclaration]]


def _readers(names: list[str], every: list[str]) -> str:
    """``a, b, c`` for the distillers that read a setting, or ``every distiller`` when all of them do."""
    return "every distiller" if names == every else ", ".join(names)


def weight_settings(declarations: Declarations) -> Iterator[Setting]:
    """``w_<term>`` for each loss term, in order of first declaration; its help says what the term
    measures for each distiller that has it."""
    every = [name for name, _ in declarations]
    for term in dict.fromkeys(term for _, d in declarations for term in d.terms):
        users = [name for name, d in declarations if term in d.terms]
        what = _what_term_measures(term, {name: d.term_help[term] for name, d in declarations if term in d.term_help})
        yield Setting(f"w_{term}", None, f"{_readers(users, every)}: weight of {what}{_DEFAULT}", rule=NON_NEGATIVE,
                      kind=Optional[float], knob=True)


def _what_term_measures(term: str, helps: dict[str, str]) -> str:
    """The help of a term one distiller declared, or each declaring distiller's, named."""
    if not helps:
        raise DaptError(f"loss term {term!r} is not explained: declare it as Term(default, help) in the first "
                        "distiller that has it")
    if len(helps) == 1:
        return next(iter(helps.values()))
    return ", ".join(f"{help} ({name})" for name, help in helps.items())


def warmup_setting(declarations: Declarations) -> Setting:
    """``distill_warmup``, its help naming the distillers that warm up by default."""
    by_epochs: dict[float, list[str]] = {}
    for name, d in declarations:
        if d.warmup:
            by_epochs.setdefault(d.warmup, []).append(name)
    warm = [f"{epochs:g} for {' and '.join(names)}" for epochs, names in by_epochs.items()]
    defaults = ", ".join(warm + ["0 for the others"]) if warm else "0"
    return Setting("distill_warmup", None,
                   "every distiller with a teacher: epochs over which the teacher terms' weights (every w_<term> "
                   "but w_ce) ramp linearly from 0 to their value, per training step; w_ce is never ramped (0 = "
                   f"no warm-up; null = the distiller's default: {defaults})",
                   rule=NON_NEGATIVE, kind=Optional[float])


def knob_sections(declarations: Declarations) -> Iterator[tuple[str, list[Setting]]]:
    """(section title, its settings): the loss weights and warm-up, each shared group read by a
    distiller, then each distiller's own knobs; a knob's help starts with the distillers that read it."""
    yield "loss weights (None keeps the distiller's default)", [*weight_settings(declarations), warmup_setting(declarations)]
    every = [name for name, _ in declarations]
    for group, settings in SHARED.items():
        users = [name for name, d in declarations if group in d.shared]
        if users:
            yield group, [_read_by(s, _readers(users, every)) for s in settings]
    for name, d in declarations:
        if d.knobs:
            yield name, [_read_by(s, name) for s in d.knobs]


def _read_by(setting: Setting, readers: str) -> Setting:
    return dataclasses.replace(setting, help=f"{readers}: {setting.help}")


def _field(setting: Setting, section: Optional[str]) -> tuple[str, Any, dataclasses.Field]:
    return setting.name, setting.type, param(setting.default, setting.help, choices=setting.choices,
                                             rule=setting.rule, knob=setting.knob, section=section)


def _fields(declarations: Declarations) -> list[tuple[str, Any, dataclasses.Field]]:
    fields, seen = [], set()
    for title, settings in knob_sections(declarations):
        for i, setting in enumerate(settings):
            if setting.name in seen:
                raise DaptError(f"distiller setting {setting.name!r} is declared twice; rename one")
            seen.add(setting.name)
            fields.append(_field(setting, title if i == 0 else None))
    return fields


def _check(settings: Any) -> None:
    """Every value in its range and among its choices (a registry's names: ``UnknownNameError``)."""
    check_ranges(settings)
    for f in dataclasses.fields(settings):
        registry = registry_of(f)
        if registry is not None and getattr(settings, f.name) is not None:
            registry.check(getattr(settings, f.name))
    # A run's config inherits these settings beside the training ones (DistillConfig): their checks run too.
    after = getattr(super(DistillerSettings, settings), "__post_init__", None)
    if after is not None:
        after()


DistillerSettings = dataclasses.make_dataclass(
    "DistillerSettings", _fields(seal(__name__)),
    namespace={"__module__": __name__, "__post_init__": _check,
               "__doc__": "Every distiller knob a params file may set, with its default; a run's config "
                          "inherits it.\n\nConstructing one checks every value against its field's range and "
                          "names (``DaptError``)."})
