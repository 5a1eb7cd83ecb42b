"""A tiny name → entry registry, in the manner of timm's ``register_model``, with lazy entries.

Registries are the single source of truth for the names a user may write in a params file:
validation, ``dapt list``, ``--help`` and the widgets all read ``names()``, ``summary()`` and
``facts()``. An entry is either registered as an object (``register``) or declared by the
``"module:attribute"`` of its implementation (``declare``), imported on the first ``get``: so a
catalog of torch models, datasets and distillers is itself torch-free, as Hugging Face
transformers keeps a model's configuration apart from its modeling code. A declaration carries
the facts that validation needs without the implementation (a model's feature width and image
size multiple, a distiller's loss terms and knobs); its summary, when not given, is the first line
of the implementation's docstring, read from the module's source without importing it.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Generic, List, Optional, TypeVar

from dapt.core.errors import DaptError

T = TypeVar("T")


class UnknownNameError(DaptError, ValueError):
    """A name that is not in a registry; the message lists the valid names."""


@dataclass
class Entry:
    """One name of a registry: its summary (None: read from ``target``'s docstring when first asked), its
    torch-free facts, and its implementation: ``value`` once known, else imported from ``target``
    (``"package.module:attribute"``) on first use."""

    summary: Optional[str]
    facts: Any = None
    target: Optional[str] = None
    value: Any = None


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Entry] = {}

    def register(self, name: str, summary: str = "", facts: Any = None) -> Callable[[T], T]:
        """Decorator adding an implementation already imported (e.g. a test's own distiller class); the
        summary defaults to the first line of its docstring. dapt's own entries are ``declare``d."""

        def add(value: T) -> T:
            doc = (getattr(value, "__doc__", None) or "").strip().splitlines()
            self._add(name, Entry(summary or (doc[0] if doc else ""), facts, value=value))
            return value

        return add

    def declare(self, name: str, target: str, summary: Optional[str] = None, facts: Any = None) -> None:
        """Add ``name`` implemented by ``target`` (``"package.module:attribute"``), imported when
        ``get(name)`` is first called; ``summary`` (by default the first line of the target's
        docstring) and ``facts`` are known without importing it."""
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target {target!r} is not 'package.module:attribute'")
        self._add(name, Entry(summary, facts, target=target))

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a test's temporary entry)."""
        self.check(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        """The implementation of ``name``, imported now if it was declared by its target."""
        entry = self._entry(name)
        if entry.value is None:
            module, attribute = entry.target.split(":")
            entry.value = getattr(importlib.import_module(module), attribute)
        return entry.value

    def check(self, name: str) -> None:
        """Raise ``UnknownNameError`` (listing the valid names) unless ``name`` is registered."""
        self._entry(name)

    def facts(self, name: str) -> Any:
        """What the declaration of ``name`` states about it, without importing its implementation."""
        return self._entry(name).facts

    def names(self) -> List[str]:
        return list(self._entries)

    def target(self, name: str) -> Optional[str]:
        """The ``"package.module:attribute"`` implementing ``name``, if it was declared by it."""
        return self._entry(name).target

    def summary(self, name: str) -> str:
        entry = self._entry(name)
        if entry.summary is None:
            entry.summary = docstring_line(entry.target)
        return entry.summary

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def _add(self, name: str, entry: Entry) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def _entry(self, name: str) -> Entry:
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return self._entries[name]


def docstring_line(target: str) -> str:
    """The first line of the docstring of ``target``'s class or function (``"package.module:attribute"``),
    read from the module's source with ``ast``: a summary kept next to the code, known without importing
    it (nor torch)."""
    module, attribute = target.split(":")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise DaptError(f"{target}: module {module!r} is not found")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == attribute:
            return (ast.get_docstring(node) or "").strip().partition("\n")[0]
    raise DaptError(f"{target}: no class or function {attribute!r} in {spec.origin}")
