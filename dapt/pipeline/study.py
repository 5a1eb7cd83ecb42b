"""Study files: parse, expand grids, apply defaults, validate every run, resolve references, order.

A study file lists runs; ``defaults`` apply to every run whose stage has that key (and means it as the
other stages do: ``config.from_defaults``); a ``grid`` of
lists expands into one run per combination (``name: "{distiller}"`` names each one); a run may
name another run of the same study (``teacher: lite2_ft``), and runs are ordered so that a run
comes after the runs it names. A file without ``runs:`` is a single run. Nothing here touches
``runs/``: a study that does not validate leaves no trace.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dapt.pipeline import config
from dapt.pipeline.config import ConfigError
from dapt.data import check_available, files_root
from dapt.distillers import needs_features
from dapt.core.claims import check_decision
from dapt.core.records import RUNS_DIR, check_name, run_dir
from dapt.core.files import read_json, rel, repo_root
from dapt.core.errors import DaptError

STUDY_KEYS = ("study", "description", "decision", "defaults", "runs")
# The largest committed params file is 7 kB; a file a thousand times larger is not a study someone wrote.
MAX_PARAMS_BYTES = 1 << 20
# A study of more runs than this is a grid written by mistake (one more key multiplies the runs): refused
# before its runs are built, which would take the machine's memory and time.
MAX_RUNS = 10_000
# Values (every scalar, list and mapping, counted again wherever an alias repeats them) a params file may hold: as
# many as MAX_PARAMS_BYTES can write out, a value taking a byte at least (`{a,b}` is five: the mapping, two keys, two
# nulls), so only aliases reach more, e.g. ten aliases of ten aliases, nine deep: a billion values in 545 bytes.
MAX_VALUES = MAX_PARAMS_BYTES


@dataclass
class RunSpec:
    name: str
    stage: str
    cfg: Any  # the validated stage config (``run_dir`` and references resolved)
    refs: list[str]  # names of runs of this study this run depends on
    set_keys: list[str]  # the keys the study file sets for this run (defaults included)
    collects: bool = False  # reads every other run (the report): runs last, even after failures

    @property
    def folder(self) -> Path:
        return Path(self.cfg.run_dir)

    @property
    def params(self) -> dict[str, Any]:
        """Every parameter, resolved: what ``params.yaml`` records and skipping compares."""
        return config.as_dict(self.cfg)

    @property
    def injected(self) -> dict[str, Any]:
        """What the executed notebook receives: the values the study sets, ``run_dir`` and ``cache_features``
        when set; the notebook's parameters cell holds the defaults, so its report opens with the run's
        choices only."""
        defaults = {f.name: f.default for f in dataclasses.fields(self.cfg)}
        injected = [key for key in config.INJECTED if key in defaults and getattr(self.cfg, key) != defaults[key]]
        return {key: getattr(self.cfg, key) for key in [*self.set_keys, *injected]}


@dataclass
class Study:
    name: str
    source: str
    runs: list[RunSpec]

    def get(self, name: str) -> RunSpec:
        return next(r for r in self.runs if r.name == name)


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A key given twice in one mapping."""


class _Expands(yaml.constructor.ConstructorError):
    """A value no params file holds: expanded by YAML aliases beyond MAX_VALUES, holding itself, or nested deeper
    than the YAML reader recurses."""


def _check_nodes(root: yaml.Node | None) -> None:
    """Walk the node tree ``yaml.compose`` built, each node once however many aliases name it (an alias is the
    node of its anchor again: a walk by reference would take minutes on a few lines of nested aliases). Raise
    ``_DuplicateKey`` for a key given twice in one mapping: YAML would keep the last value silently, and
    ``{epochs: 1, epochs: 5}`` is a mistake, never a choice; merge keys (``<<: *defaults``) may be overridden key
    by key. Raise ``_Expands`` for a value holding more than MAX_VALUES values once its aliases are expanded, or
    holding itself: run names, labels and errors built from it would take the machine's memory and time."""
    sizes: dict[int, int | None] = {}  # id(node) → the values it holds, expanded; None while it is being walked

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            if sizes[id(node)] is None:
                raise _Expands(None, None, "this value holds itself through a YAML alias (an alias inside its own "
                                           "anchor), so it never ends; write it out", node.start_mark)
            return sizes[id(node)]
        sizes[id(node)] = None
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    if key_node.value in seen:
                        raise _DuplicateKey(None, None, f"key {key_node.value!r} is given twice", key_node.start_mark)
                    seen.add(key_node.value)
                total += size(key_node) + size(value_node)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        if total > MAX_VALUES:
            raise _Expands(None, None, f"YAML aliases expand this value to {total:,} values, more than a params file "
                                       f"holds written out ({MAX_VALUES:,}); nest fewer aliases, or write the values "
                                       f"out", node.start_mark)
        sizes[id(node)] = total
        return total

    if root is not None:
        size(root)


def plain_yaml(text: str) -> Any:
    """``text`` read as plain YAML values by ``yaml.safe_load`` (no tags building objects), after its node
    tree, composed by the safe loader without constructing anything, is checked for keys given twice and for
    aliases that expand it beyond what a params file holds (``_check_nodes``)."""
    try:
        _check_nodes(yaml.compose(text, Loader=yaml.SafeLoader))
        return yaml.safe_load(text)
    except RecursionError:  # PyYAML composes and constructs a nested value by recursion, a level at a time
        raise _Expands(None, None, "values nested too deep to read (lists or mappings hundreds of levels inside "
                                   "each other); is it the right file?", None) from None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _read(path: Path) -> Any:
    where = rel(path)
    if path.is_dir():
        raise DaptError(f"{where}: is a folder, not a params file; give a .yaml file, e.g. {where}/<study>.yaml")
    if not path.is_file():
        raise DaptError(f"{path}: no such params file")
    try:
        size = path.stat().st_size
        if size > MAX_PARAMS_BYTES:
            raise ConfigError(f"{where}: {size:,} bytes, more than a params file holds ({MAX_PARAMS_BYTES:,}); "
                              f"is it the right file? A large grid is written as lists under grid:, not run by run")
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{where}: cannot read the params file ({err.strerror}); check its permissions") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ConfigError(f"{where}: not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}); save the file as "
                          f"UTF-8 (an editor's 'save with encoding', or iconv -t UTF-8)") from None
    try:
        return plain_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problem = _one_line(getattr(err, "problem", None) or err)
        if isinstance(err, _DuplicateKey):
            raise ConfigError(f"{where}{at}: {problem}; keep one of them") from None
        if isinstance(err, _Expands):
            raise ConfigError(f"{where}{at}: {problem}") from None
        if isinstance(err, yaml.constructor.ConstructorError):  # e.g. !!python/object/apply:os.system
            raise ConfigError(f"{where}: YAML tag not allowed{at} ({problem}): a params "
                              f"file holds plain values (numbers, strings, lists, mappings), never objects") from None
        raise ConfigError(f"{where}: not valid YAML{at}: {problem}") from None


def _expand_grid(entry: dict, where: str) -> list[dict]:
    grid = entry.pop("grid", None)
    if grid is None:
        return [entry]
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{where}: grid must map keys to non-empty lists, e.g. grid: {{distiller: [kd, crd]}}")
    count = math.prod(len(values) for values in grid.values())
    if count > MAX_RUNS:
        raise ConfigError(f"{where}: grid makes {count:,} runs ({' x '.join(str(len(v)) for v in grid.values())}), "
                          f"more than a study holds ({MAX_RUNS:,}); split it into studies, or give fewer values")
    runs = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        run = {**entry, **values}
        try:
            run["name"] = str(entry.get("name", "_".join(map(str, combo)))).format(**values)
        except (KeyError, IndexError) as err:
            raise ConfigError(f"{where}: name {entry.get('name')!r} uses {err} which is not a grid key") from None
        runs.append(run)
    return runs


def _entries(data: Any, path: Path) -> tuple[str, dict, list[dict]]:
    where = rel(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping (a study with 'runs:' or a single run with 'stage:')")
    if "runs" not in data and "stage" in data:  # a single run
        entry = dict(data)
        entry.setdefault("name", entry.get("stage", "run"))
        return path.stem, {}, [entry]
    unknown = [k for k in data if k not in STUDY_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key {unknown[0]!r}; valid keys: {', '.join(STUDY_KEYS)}")
    defaults = data.get("defaults") or {}
    runs = data.get("runs")
    if not isinstance(defaults, dict):
        raise ConfigError(f"{where}: defaults must be a mapping of parameter: value")
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise ConfigError(f"{where}: runs must be a non-empty list of mappings, each with a stage")
    return str(data.get("study") or path.stem), defaults, [dict(r) for r in runs]


def _description(data: Any, where: str) -> str:
    """A study file's ``description`` (the question and the rule that decides it), which its report opens
    with; "" for a single-run file or a study without one."""
    if not isinstance(data, dict) or "runs" not in data or data.get("description") is None:
        return ""
    text = data["description"]
    if not isinstance(text, str):
        raise ConfigError(f"{where}: description must be text (the study's question and the rule that decides "
                          f"it), got a {type(text).__name__}")
    return text.strip()


def _decision(data: Any, where: str) -> dict | None:
    """A study file's ``decision`` (the rule that decides its question, as data the report evaluates),
    checked (``dapt.core.claims``); None for a single-run file or a study without one."""
    if not isinstance(data, dict) or "runs" not in data:
        return None
    try:
        return check_decision(data.get("decision"))
    except DaptError as err:
        raise ConfigError(f"{where}: {err}") from None


def study_defaults(path: str | Path) -> tuple[str, dict]:
    """The study name and ``defaults`` of a params file, unvalidated (what a new run of it starts from)."""
    name, defaults, _ = _entries(_read(Path(path)), Path(path))
    return name, dict(defaults)


def _check_name(name: str, what: str, where: str) -> None:
    try:
        check_name(name, what)
    except DaptError as err:
        raise ConfigError(f"{where}: {err}") from None


def _reference_fields(cls: type) -> dict[str, str]:
    """Fields that name another run: key → the stage that run must have."""
    return {f.name: f.metadata["ref"] for f in dataclasses.fields(cls) if f.metadata.get("ref")}


def _check_finished_run(label: str, key: str, target: str, stage: str, dataset: str, images: str | None,
                        stage_of: dict) -> None:
    """A reference to a run folder outside the study must name a finished run of the right stage and dataset (for
    dataset folder, on the same folder ``images``), inside ``runs/`` (a student writes its teacher's cache into
    that folder)."""
    root = repo_root()
    folder = root / target  # an absolute target stays itself
    metrics = read_json(folder / "metrics.json")
    if metrics is None:
        raise ConfigError(f"{label}: {key} {target!r} is neither a run of this study ({', '.join(stage_of)}) "
                          f"nor a run folder with metrics.json")
    if not folder.resolve().is_relative_to((root / RUNS_DIR).resolve()):
        raise ConfigError(f"{label}: {key} {target!r} is outside {RUNS_DIR}/; name a run of this study or a run "
                          f"folder {RUNS_DIR}/<study>/<run>")
    if metrics.get("stage") != stage:
        raise ConfigError(f"{label}: {key} {target!r} is a {metrics.get('stage')} run, not a {stage} run")
    if metrics.get("status") != "done":
        raise ConfigError(f"{label}: {key} {target!r} is {metrics.get('status')!r}, not done; finish it first "
                          f"(dapt run on its study) or name another {stage} run")
    params = metrics.get("params")
    if not isinstance(params, dict):
        raise ConfigError(f"{label}: {key} {target!r}: its metrics.json holds no params mapping, so it is no run "
                          f"dapt recorded (or its record was edited); name another {stage} run")
    theirs, their_folder = params.get("dataset"), params.get("folder")
    if theirs != dataset or _place(their_folder) != _place(images):
        mine = _dataset_text(dataset, images)
        raise ConfigError(f"{label}: {key} {target!r} was trained on {_dataset_text(theirs, their_folder)}, this run "
                          f"uses {mine}; name a {stage} run of {mine}")


def settable_keys() -> list[str]:
    """Every key a params file may set, over all stages."""
    all_keys = dict.fromkeys(f.name for cls in config.STAGES.values() for f in dataclasses.fields(cls))
    return [k for k in all_keys if k not in config.INJECTED]


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["epochs=2", "kd_T=8"]`` (``dapt run --set``) → ``{"epochs": 2, "kd_T": 8}``, each value
    read with ``yaml.safe_load`` as in a params file; a malformed item or unknown key is one ConfigError."""
    overrides: dict[str, Any] = {}
    known = settable_keys()
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: write key=value, e.g. --set epochs=2")
        if key not in known:
            raise config.unknown_key(f"--set {item!r}", key, known)
        try:
            overrides[key] = plain_yaml(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not a plain YAML value "
                              f"({_one_line(getattr(err, 'problem', None) or err)})") from None
    return overrides


def _in_repo(path: str | Path) -> Path:
    """``path`` as the notebooks read it: relative to the repository, or absolute."""
    return Path(path) if Path(path).is_absolute() else repo_root() / path


def _place(folder: Any) -> Path | None:
    """A run's ``folder`` resolved, so that two spellings of one folder agree; None without one."""
    return _in_repo(folder).resolve() if isinstance(folder, str) and folder else None


def _images_of(cfg: Any) -> tuple[str | None, Path | None]:
    """What a run's classes and images come from: its dataset, and for dataset folder the folder."""
    return getattr(cfg, "dataset", None), _place(getattr(cfg, "folder", None))


def _dataset_text(dataset: str, folder: str | None) -> str:
    return f"{dataset} {folder}" if folder else dataset


def _check_data(spec: RunSpec, label: str, checked: dict) -> None:
    """A run's dataset must be on disk (its files, not decoded; a user's folder in its layout) unless the run
    may download it."""
    cfg = spec.cfg
    if not hasattr(cfg, "dataset"):
        return
    root = _in_repo(files_root(cfg.dataset, cfg.data_root, cfg.folder))
    key = (cfg.dataset, root, cfg.download)
    if key not in checked:
        try:
            check_available(cfg.dataset, root, cfg.download)
            checked[key] = None
        except DaptError as err:
            checked[key] = str(err)
    if checked[key]:
        raise ConfigError(f"{label}: {checked[key]}")


def load_study(path: str | Path, overrides: dict[str, Any] | None = None, extra_runs: list[dict] = (),
               check_data: bool = True) -> Study:
    """Parse and validate a study file; raise one ``ConfigError`` for the first problem.

    ``overrides`` (``dapt run --set``) replace the file's value of a key in every run whose stage
    has that key, and are validated with the run like the file's own values. ``extra_runs`` (runs
    chosen in ``dapt.ui.widgets``) join the file's runs as if written at its end. ``check_data``: also
    require every run's dataset on disk (``dapt run``; ``dapt status`` does not need it).
    """
    path = Path(path)
    where = rel(path)
    data = _read(path)
    study_name, defaults, raw_runs = _entries(data, path)
    description = _description(data, where)
    decision = _decision(data, where)
    raw_runs = [*raw_runs, *(dict(run) for run in extra_runs)]
    _check_name(study_name, "study name", where)
    settable = settable_keys()
    for key in defaults:
        if key not in settable:
            raise config.unknown_key(f"{where}: defaults", key, settable)
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in settable:
            raise config.unknown_key("--set", key, settable)

    entries: list[dict] = []
    for i, raw in enumerate(raw_runs):
        label = f"{where}: run {raw.get('name', i + 1)!r}"
        if "stage" not in raw:
            raise ConfigError(f"{label}: missing 'stage'; choose one of: {', '.join(config.STAGES)}")
        entries.extend(_expand_grid(raw, label))
        if len(entries) > MAX_RUNS:
            raise ConfigError(f"{where}: more than {MAX_RUNS:,} runs, more than a study holds; split it into studies")

    names = [str(e.get("name")) for e in entries]
    for name in names:
        _check_name(name, "run name", where)
        if names.count(name) > 1:
            raise ConfigError(f"{where}: two runs are named {name!r}; run names must be unique")
    stage_of = {str(e["name"]): e["stage"] for e in entries}

    specs: list[RunSpec] = []
    inside: list[tuple[RunSpec, str, str]] = []  # (run, key, the run of this study it names)
    for entry in entries:
        name, stage = str(entry.pop("name")), entry.pop("stage")
        label = f"{where}: run {name!r}"
        try:
            cls = config.stage_config(stage)
        except ConfigError as err:
            raise ConfigError(f"{label}: {err}") from None
        fields = {f.name for f in dataclasses.fields(cls)}
        for key in config.INJECTED:
            if key in entry or key in defaults:
                raise ConfigError(f"{label}: {key} is set by `dapt run`, not by a params file; remove it")
        values = config.from_defaults(cls, defaults)
        values.update(entry)
        values.update({k: v for k, v in overrides.items() if k in fields})
        refs, named = [], []
        for key, wanted in _reference_fields(cls).items():
            target = values.get(key)
            if not isinstance(target, str):
                continue  # null, or no text (a list cannot name a run): validate says what a reference takes
            if target in stage_of:
                if stage_of[target] != wanted:
                    raise ConfigError(f"{label}: {key} {target!r} is a {stage_of[target]} run, not a {wanted} run")
                refs.append(target)
                named.append((key, target))
                values[key] = run_dir(study_name, target).as_posix()
            elif not config.python_spelling(target, str | None):  # 'None' meant null: validate says so
                dataset = values.get("dataset", next(f.default for f in dataclasses.fields(cls) if f.name == "dataset"))
                _check_finished_run(label, key, target, wanted, dataset, values.get("folder"), stage_of)
        set_keys = list(values)
        values["run_dir"] = run_dir(study_name, name).as_posix()
        if "study_description" in fields and description:
            values["study_description"] = description
        if "study_decision" in fields and decision:
            values["study_decision"] = decision
        specs.append(RunSpec(name, stage, config.validate(cls, values, label), refs, set_keys,
                             stage in config.COLLECTS_STUDY))
        inside += [(specs[-1], key, target) for key, target in named]
    _check_datasets_agree(inside, {spec.name: spec for spec in specs}, where)
    if check_data:
        data_checked: dict = {}
        for spec in specs:
            _check_data(spec, f"{where}: run {spec.name!r}", data_checked)
    for spec in specs:
        if spec.collects:
            spec.refs = [other.name for other in specs if not other.collects]
    share_teacher_features(specs)
    return Study(study_name, where, _order(specs, where))


def _check_datasets_agree(inside: list[tuple[RunSpec, str, str]], by_name: dict[str, RunSpec], where: str) -> None:
    """A run that names another run of the study (a student its teacher or synthetic set, a generate run the
    teacher that classifies its images) works on that run's dataset: its classes are the model's outputs, its
    images the set's. Otherwise the notebook would fail after the named run had trained, so it is refused now,
    in one line naming both runs and both datasets (with dataset folder, both folders). (Image sizes may differ: a
    teacher sees the student's view resized to its own size, and synthetic images are resized to the student's,
    always with 3 channels.)"""
    for spec, key, target in inside:
        other = by_name[target].cfg
        mine, theirs = _images_of(spec.cfg), _images_of(other)
        if mine[0] is None or theirs[0] is None or mine == theirs:
            continue
        mine, theirs = _dataset_text(spec.cfg.dataset, spec.cfg.folder), _dataset_text(other.dataset, other.folder)
        made = "generated its images from" if by_name[target].stage == "generate" else "is trained on"
        raise ConfigError(f"{where}: run {spec.name!r} uses {mine}, but its {key} {target!r} {made} {theirs}; "
                          f"set the same dataset on both runs, or name a {by_name[target].stage} run of {mine}")


def share_teacher_features(specs: list[RunSpec]) -> None:
    """Set ``cache_features`` on every cached distill run of a teacher that one of the study's students reads
    the features of (a distiller declared with ``reads=("logits", "features")``): whichever of them builds a
    view's cache first then stores features too, so the teacher computes each view once for all of them. With
    only logit students, the cache holds logits alone, a fraction of the size."""
    cached = [s for s in specs if s.stage == "distill" and s.cfg.teacher and s.cfg.teacher_cache == "on"]
    readers = {Path(s.cfg.teacher).as_posix() for s in cached if needs_features(s.cfg.distiller)}
    for spec in cached:
        spec.cfg.cache_features = Path(spec.cfg.teacher).as_posix() in readers


def _order(specs: list[RunSpec], where: str) -> list[RunSpec]:
    """Topological order, stable with respect to the file; a cycle is an error."""
    ordered: list[RunSpec] = []
    placed: set[str] = set()
    pending = list(specs)
    while pending:
        ready = [s for s in pending if all(r in placed for r in s.refs)]
        if not ready:
            raise ConfigError(f"{where}: runs refer to each other in a cycle: {', '.join(s.name for s in pending)}")
        ordered.append(ready[0])
        placed.add(ready[0].name)
        pending.remove(ready[0])
    return ordered
