"""The import layering of ``dapt``: packages import only the packages below them, no module
import cycle, no private name crosses a module, and the pipeline loads no torch.

The analysis reads every module's source with ``ast`` (imports inside functions count, as they
run all the same), so it needs no torch and imports nothing of ``dapt``.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What each package may import besides itself: the layers of the package docstrings, downwards.
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "models": {"core", "data"},
    "distillers": {"core"},
    "analysis": {"core"},
    "plots": {"core", "analysis"},
    "training": {"core", "data", "models", "distillers"},
    "pipeline": {"core", "data", "models", "distillers"},
    "stages": {"core", "data", "models", "distillers", "training", "analysis", "plots", "pipeline"},
    "ui": {"core", "pipeline", "analysis", "plots"},
}
# The top-level modules (cli, __main__) stand above every package but the training code: the
# command line validates and schedules, the notebooks train.
TOP_FORBIDDEN = {"stages", "training"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. "dapt.pipeline.config"
    target: str  # the imported module (a package's __init__ is the package), e.g. "dapt.data"
    line: int
    names: tuple[str, ...] = ()  # the names taken by `from target import ...`


def module_files(root: Path) -> dict[str, Path]:
    """Every module of the ``dapt`` package under ``root``, by dotted name."""
    found = {}
    for path in sorted((root / "dapt").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _resolve_from(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(root: Path) -> list[Import]:
    """Every import of a ``dapt`` module by a ``dapt`` module, wherever in the file it stands. ``from
    package import name`` counts as importing ``package.name`` when that is a module."""
    modules = module_files(root)
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [Import(module, alias.name, node.lineno) for alias in node.names
                          if alias.name.split(".")[0] == "dapt"]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve_from(module, node, path.name == "__init__.py")
                if target.split(".")[0] != "dapt":
                    continue
                as_modules = [alias.name for alias in node.names if f"{target}.{alias.name}" in modules]
                found += [Import(module, f"{target}.{name}", node.lineno) for name in as_modules]
                names = tuple(alias.name for alias in node.names if alias.name not in as_modules)
                if names or not as_modules:
                    found.append(Import(module, target, node.lineno, names))
    return found


def package_of(module: str) -> str | None:
    """``dapt.pipeline.config`` → ``pipeline``; None for the top-level modules (cli, __main__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def layer_violations(root: Path) -> list[str]:
    """Each import of a package the importing one may not import (an upward or sideways import)."""
    problems = []
    for imp in imports_of(root):
        source, target = package_of(imp.source), package_of(imp.target)
        if target is None or source == target:
            continue
        if source is None:
            ok = imp.source == "dapt" or target not in TOP_FORBIDDEN
        else:
            ok = target in ALLOWED.get(source, set())
        if not ok:
            problems.append(f"{imp.source} (line {imp.line}) imports {imp.target}: {source or 'the top'} may "
                            f"import only {', '.join(sorted(ALLOWED.get(source, set()))) or 'nothing'}"
                            if source else f"{imp.source} (line {imp.line}) imports {imp.target}")
    return sorted(set(problems))


def import_cycles(root: Path) -> list[list[str]]:
    """The module import cycles (strongly connected components of more than one module, or a module
    importing itself), by Tarjan's algorithm."""
    graph: dict[str, set[str]] = {m: set() for m in module_files(root)}
    for imp in imports_of(root):
        if imp.target in graph:
            graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_name_violations(root: Path) -> list[str]:
    """Each private name (a leading underscore) one module takes from another: ``from m import _x``,
    or ``m._x`` on a name bound to a ``dapt`` module."""
    modules = module_files(root)
    problems = [f"{imp.source} (line {imp.line}) imports {imp.target}.{name}"
                for imp in imports_of(root) for name in imp.names if _private(name) and imp.target != imp.source]
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        bound: dict[str, str] = {}  # local name -> the dapt module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules and alias.asname:
                        bound[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                target = _resolve_from(module, node, path.name == "__init__.py")
                for alias in node.names:
                    if f"{target}.{alias.name}" in modules:
                        bound[alias.asname or alias.name] = f"{target}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _private(node.attr)
                    and bound.get(node.value.id, module) != module):
                problems.append(f"{module} (line {node.lineno}) uses {bound[node.value.id]}.{node.attr}")
    return sorted(set(problems))


# --- the rules, on dapt itself -------------------------------------------------------------------

def test_every_package_of_dapt_is_in_the_layers():
    packages = {package_of(m) for m in module_files(REPO)} - {None}
    assert packages == set(ALLOWED)


def test_imports_point_down_only():
    assert layer_violations(REPO) == []


def test_no_module_import_cycle():
    assert import_cycles(REPO) == []


def test_no_private_name_crosses_a_module():
    assert private_name_violations(REPO) == []


# A stage notebook drives one stage module; the only stage-to-stage imports are generate's generators.
GENERATORS = {("dapt.stages.generate", "dapt.stages.ddpm"), ("dapt.stages.generate", "dapt.stages.stable_diffusion"),
              ("dapt.stages.generate", "dapt.stages.holdout")}


# ... and the timing (`dapt run --timing`), which trains the two training stages as their notebooks do.
TIMING = {("dapt.stages.timing", "dapt.stages.teacher"), ("dapt.stages.timing", "dapt.stages.distill")}


def test_no_stage_imports_another_but_generate_its_generators():
    crossing = {(imp.source, imp.target) for imp in imports_of(REPO)
                if package_of(imp.source) == package_of(imp.target) == "stages"
                and imp.target not in ("dapt.stages", "dapt.stages.notebook")}
    assert crossing <= GENERATORS | TIMING, sorted(crossing - GENERATORS - TIMING)


def test_the_pipeline_and_the_cli_load_no_torch():
    pipeline = sorted(m for m in module_files(REPO) if m.startswith("dapt.pipeline"))
    code = (f"import sys, importlib\nfor name in {pipeline + ['dapt.cli']!r}:\n    importlib.import_module(name)\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
            "assert not loaded, loaded[:5]")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- the checker fails where it must ---------------------------------------------------------------

def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, source in {"dapt/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return root


def test_the_checker_reports_an_upward_import_even_inside_a_function(tmp_path):
    root = write_tree(tmp_path, {
        "dapt/core/__init__.py": "",
        "dapt/core/errors.py": "def fail():\n    from dapt.stages.distill import distill\n",
        "dapt/stages/__init__.py": "",
        "dapt/stages/distill.py": "from dapt.core.errors import fail\ndef distill():\n    pass\n",
        "dapt/cli.py": "import dapt.training.loop\n",
        "dapt/training/__init__.py": "",
        "dapt/training/loop.py": "",
    })
    problems = layer_violations(root)
    assert any(p.startswith("dapt.core.errors (line 2) imports dapt.stages.distill: core may import only nothing")
               for p in problems), problems
    assert "dapt.cli (line 1) imports dapt.training.loop" in problems
    assert not any(p.startswith("dapt.stages") for p in problems)  # stages may import core


def test_the_checker_reports_a_cycle_and_a_private_name(tmp_path):
    root = write_tree(tmp_path, {
        "dapt/core/__init__.py": "",
        "dapt/core/a.py": "from dapt.core import b\n",
        "dapt/core/b.py": "def f():\n    from dapt.core.c import _hidden\n",
        "dapt/core/c.py": "import dapt.core.a\n_hidden = 1\n",
        "dapt/core/d.py": "from dapt.core import c as helpers\nx = helpers._hidden\n",
    })
    assert import_cycles(root) == [["dapt.core.a", "dapt.core.b", "dapt.core.c"]]
    assert private_name_violations(root) == ["dapt.core.b (line 2) imports dapt.core.c._hidden",
                                             "dapt.core.d (line 2) uses dapt.core.c._hidden"]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_docstring_names_what_it_may_import(package):
    """The package's own docstring states its layer; it names every package it may import."""
    doc = ast.get_docstring(ast.parse((REPO / "dapt" / package / "__init__.py").read_text(encoding="utf-8"))) or ""
    missing = [allowed for allowed in ALLOWED[package] if f"``{allowed}``" not in doc and f"``{allowed}." not in doc]
    assert not missing, f"dapt/{package}/__init__.py does not name {missing}"
