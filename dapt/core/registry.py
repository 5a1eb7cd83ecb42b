"""A tiny name → factory registry, in the manner of timm's ``register_model``.

Registries are the single source of truth for the names a user may write in a params
file: validation, ``dapt list``, ``--help`` and the widgets all read ``names()``.
"""
from __future__ import annotations

from typing import Callable, Dict, Generic, List, TypeVar

from dapt.core.errors import DaptError

T = TypeVar("T")


class UnknownNameError(DaptError, ValueError):
    """A name that is not in a registry; the message lists the valid names."""


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, T] = {}
        self._summaries: Dict[str, str] = {}

    def register(self, name: str, summary: str = "") -> Callable[[T], T]:
        """Decorator: ``@MODELS.register("resnet18", "torchvision ResNet-18")``."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            doc = (getattr(entry, "__doc__", None) or "").strip().splitlines()
            self._summaries[name] = summary or (doc[0] if doc else "")
            return entry

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> List[str]:
        return list(self._entries)

    def summary(self, name: str) -> str:
        return self._summaries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries
