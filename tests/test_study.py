"""Study files: parsing, grids, defaults, validation errors, references and ordering."""
from __future__ import annotations

import textwrap

import pytest

from dapt.pipeline import config
from dapt.ui import explore
from dapt.pipeline.config import ConfigError
from dapt.pipeline.study import load_study


def write(tmp_path, text: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_single_run_file_uses_file_stem_as_study(tmp_path):
    study = load_study(write(tmp_path, "{stage: teacher, name: t, model: resnet18, init: fr, epochs: 2}", "solo.yaml"))
    assert study.name == "solo"
    [run] = study.runs
    assert run.cfg.epochs == 2 and run.cfg.model == "resnet18"
    assert run.cfg.run_dir == "runs/solo/t"


def test_defaults_apply_and_run_values_win(tmp_path):
    study = load_study(write(tmp_path, """
        study: demo
        defaults: {dataset: digits, epochs: 3, lr: 1.0e-2}
        runs:
          - {stage: teacher, name: a, model: resnet18, init: fr}
          - {stage: teacher, name: b, model: resnet18, init: fr, epochs: 7}
    """))
    a, b = study.runs
    assert (a.cfg.dataset, a.cfg.epochs, a.cfg.lr) == ("digits", 3, 0.01)
    assert b.cfg.epochs == 7


def test_a_generate_run_does_not_take_the_training_batch_size_from_defaults(tmp_path):
    path = write(tmp_path, """
        study: demo
        defaults: {dataset: digits, batch_size: 64, image_size: 32}
        runs:
          - {stage: teacher, name: t, model: resnet18, init: fr}
          - {stage: generate, name: g}
          - {stage: generate, name: g250, batch_size: 250}
    """)
    study = load_study(path)
    assert study.get("t").cfg.batch_size == 64
    assert study.get("g").cfg.batch_size is None and study.get("g").cfg.image_size == 32  # other keys still apply
    assert study.get("g250").cfg.batch_size == 250
    # and a new run started from the widgets the same way
    assert explore.defaults_for(path, "generate")[1]["batch_size"] is None
    assert explore.defaults_for(path, "distill")[1]["batch_size"] == 64


def test_yaml_exponent_strings_become_floats(tmp_path):
    # PyYAML reads 1e-3 (no dot) as a string; the typed config turns it into a float.
    study = load_study(write(tmp_path, "{stage: teacher, name: t, lr: 1e-3, weight_decay: 5e-4}"))
    assert study.runs[0].cfg.lr == pytest.approx(1e-3)
    assert study.runs[0].cfg.weight_decay == pytest.approx(5e-4)


def test_runs_inject_only_the_keys_the_study_sets(tmp_path):
    study = load_study(write(tmp_path, """
        study: demo
        defaults: {dataset: digits, epochs: 3, cache_views: 2}
        runs:
          - {stage: teacher, name: t, model: resnet18, init: fr}
          - {stage: distill, name: d, teacher: t, distiller: crd, crd_k: 64}
    """))
    assert study.get("t").injected == {"dataset": "digits", "epochs": 3, "model": "resnet18", "init": "fr",
                                       "run_dir": "runs/demo/t"}
    assert study.get("d").injected == {"dataset": "digits", "epochs": 3, "cache_views": 2, "teacher": "runs/demo/t",
                                       "distiller": "crd", "crd_k": 64, "run_dir": "runs/demo/d",
                                       "cache_features": True}
    assert study.get("d").params["kd_T"] == 4.0  # the resolved parameters still hold every key


def test_the_study_tells_a_teachers_cache_to_store_features_when_one_of_its_students_reads_them(tmp_path):
    study = load_study(write(tmp_path, """
        study: demo
        defaults: {dataset: digits}
        runs:
          - {stage: teacher, name: t, model: resnet18, init: fr}
          - {stage: teacher, name: u, model: resnet18, init: fr}
          - {stage: distill, name: "t_{distiller}", teacher: t, grid: {distiller: [kd, dkd, srrl]}}
          - {stage: distill, name: u_kd, teacher: u, distiller: kd}
          - {stage: distill, name: u_crd_live, teacher: u, distiller: crd, teacher_cache: "off"}
    """))
    features = {r.name: r.cfg.cache_features for r in study.runs if r.stage == "distill"}
    # t's kd and dkd students store features for its srrl student; u's only cached student reads logits
    assert features == {"t_kd": True, "t_dkd": True, "t_srrl": True, "u_kd": False, "u_crd_live": False}
    assert "cache_features" not in study.get("u_kd").injected  # the notebook's default
    with pytest.raises(ConfigError, match="run 'd': cache_features is set by `dapt run`, not by a params file"):
        load_study(write(tmp_path, """
            study: demo
            runs:
              - {stage: distill, name: d, distiller: none, cache_features: true}
        """))


def test_grid_expands_with_formatted_names(tmp_path):
    study = load_study(write(tmp_path, """
        study: g
        runs:
          - {stage: teacher, name: "{model}_{init}", grid: {model: [resnet18, mobilenet_v2], init: [fr, ft]}}
    """))
    assert [r.name for r in study.runs] == ["resnet18_fr", "resnet18_ft", "mobilenet_v2_fr", "mobilenet_v2_ft"]
    assert study.get("mobilenet_v2_ft").cfg.init == "ft"


@pytest.mark.parametrize("text, fragment", [
    ("{stage: teacher, name: t, epoch: 3}", "unknown key 'epoch' (did you mean 'epochs'?)"),
    ("{stage: teacher, name: t, epochs: three}", "epochs must be an integer"),
    ("{stage: teacher, name: t, lr: fast}", "lr must be a number"),
    ("{stage: teacher, name: t, augment: 1}", "augment must be true/false"),
    ("{stage: teacher, name: t, init: scratch}", "init: 'scratch' is not one of: fr, lp, ft"),
    ("{stage: teacher, name: t, model: resnet9}", "model: 'resnet9' is not one of:"),
    ("{stage: teacher, name: t, dataset: mnist}", "dataset: 'mnist' is not one of:"),
    ("{stage: pretrain, name: t}", "unknown stage 'pretrain'"),
    ("{stage: teacher, name: ../evil}", "invalid run name '../evil'"),
    ("{stage: teacher, name: t, run_dir: /tmp/x}", "run_dir is set by `dapt run`"),
    ("study: s\nruns: [{name: t}]", "missing 'stage'"),
    ("study: s\ndefaults: {epoch: 2}\nruns: [{stage: teacher, name: t}]", "defaults: unknown key 'epoch'"),
    ("study: s\nrun: []", "unknown top-level key 'run'"),
    ("study: s\nruns: [{stage: teacher, name: a}, {stage: teacher, name: a}]", "two runs are named 'a'"),
    ("study: s\nruns: [{stage: teacher, name: '{x}', grid: {model: [resnet18]}}]", "not a grid key"),
    ("study: ../up\nruns: [{stage: teacher, name: a}]", "invalid study name"),
    ("{stage: teacher, name: t, lr: [1, 2", "not valid YAML at line"),
    ("{stage: distill, name: d, distiller: kd}", "distiller 'kd' needs a teacher"),
    ("{stage: teacher, name: t, epochs: 0}", "epochs=0 must be >= 1"),
    ("{stage: teacher, name: t, lr: -0.1}", "lr=-0.1 must be > 0"),
    ("{stage: distill, name: d, distiller: none, crd_momentum: 1.0}", "crd_momentum=1.0 must be in [0, 1)"),
])
def test_bad_files_give_one_clear_error(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_study(path)
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message
    assert "s.yaml" in message or "invalid" in message


def _stage_with_reference(monkeypatch, stage: str, target_stage: str) -> None:
    """Register a stage whose ``teacher`` key names a run of ``target_stage`` (like distill will)."""
    from dataclasses import make_dataclass

    field = config.param(None, "a run of this study")
    field.metadata = {**field.metadata, "ref": target_stage}
    cls = make_dataclass(stage.title(), [("teacher", config.Optional[str], field)], bases=(config.TeacherConfig,))
    monkeypatch.setitem(config.STAGES, stage, cls)


def test_references_order_runs_and_resolve_to_run_folders(tmp_path, monkeypatch):
    _stage_with_reference(monkeypatch, "child", "teacher")
    study = load_study(write(tmp_path, """
        study: r
        runs:
          - {stage: child, name: kid, teacher: big}
          - {stage: teacher, name: big}
    """))
    assert [r.name for r in study.runs] == ["big", "kid"]
    assert study.get("kid").cfg.teacher == "runs/r/big"
    assert study.get("kid").refs == ["big"]
    with pytest.raises(ConfigError, match="'ghost' is neither a run of this study"):
        load_study(write(tmp_path, "study: r\nruns: [{stage: child, name: kid, teacher: ghost}]", "t.yaml"))
    with pytest.raises(ConfigError, match="'kid' is a child run, not a teacher run"):
        load_study(write(tmp_path, """
            study: r
            runs:
              - {stage: child, name: kid, teacher: big}
              - {stage: child, name: kid2, teacher: kid}
              - {stage: teacher, name: big}
        """, "v.yaml"))


def test_reference_cycle_is_refused(tmp_path, monkeypatch):
    _stage_with_reference(monkeypatch, "loop", "loop")
    with pytest.raises(ConfigError, match="cycle"):
        load_study(write(tmp_path, """
            study: r
            runs:
              - {stage: loop, name: a, teacher: b}
              - {stage: loop, name: b, teacher: a}
        """))


def test_a_parameter_added_after_a_run_was_recorded_counts_as_its_default(tmp_path, monkeypatch):
    """Runs recorded before a stage gained a parameter (e.g. distill's diffaug) are still the same runs;
    a recorded value that differs from the wanted one is still a change."""
    import json

    import yaml

    from dapt.pipeline.runner import run_state

    monkeypatch.chdir(tmp_path)
    study = load_study(write(tmp_path, "{stage: distill, name: d, dataset: digits, distiller: none}"))
    spec = study.get("d")
    spec.folder.mkdir(parents=True)
    (spec.folder / "metrics.json").write_text(json.dumps({"status": "done"}))
    older = {k: v for k, v in spec.params.items() if k not in ("synthetic", "synset_size", "diffaug")}
    (spec.folder / "params.yaml").write_text(yaml.safe_dump(older))
    assert run_state(spec).same_params
    (spec.folder / "params.yaml").write_text(yaml.safe_dump({**older, "diffaug": "S"}))
    assert run_state(spec).changed == ["diffaug"]
