"""Distillers: the student's training loss, from plain cross-entropy to learning from a teacher.

This package's top is torch-free, for the pipeline: the catalogs ``DISTILLERS``, ``PROJECTORS``
and ``CONNECTORS`` with each distiller's declaration (``catalog``), and ``DistillerSettings``, every
knob a params file may set, built from the declarations (``settings``). The implementations import
torch: ``base`` (the contract: a distiller returns the unweighted losses of its declared terms; the
base weighs, ramps and sums them; ``build_distiller``), ``losses`` (the plain loss functions),
``projectors`` (projection heads and SRRL connectors) and one module per distiller. Adding a
distiller is one new module and one ``declare_distiller`` in ``catalog``.

``DistillerSettings`` is built on first use, not when the package is imported, so a declaration
made after importing the catalog (a distiller outside the package) still gets its settings.

Imports ``core`` only.
"""
from __future__ import annotations

from typing import Any

from dapt.distillers.catalog import (CONNECTORS, DISTILLERS, PROJECTORS, DistillerDeclaration, Setting, Term,
                                     declare_distiller, needs_features, needs_teacher)

__all__ = [
    "DISTILLERS", "PROJECTORS", "CONNECTORS", "DistillerDeclaration", "DistillerSettings", "Setting", "Term",
    "declare_distiller", "needs_teacher", "needs_features",
]


def __getattr__(name: str) -> Any:
    if name == "DistillerSettings":
        from dapt.distillers.settings import DistillerSettings

        return DistillerSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
