"""JupyterLab widgets over ``dapt.ui.explore``: choose a study, a stage and its choices, press Run.

A thin view: the options, the validation and the execution are ``dapt.ui.explore``'s; the dropdowns
are built from the stage's fields (``config.STAGES``) and the registries, so a new stage, model or
distiller appears here without a change. ``Explorer(...).view`` is the widget to display; tests
set ``.value`` on its widgets and ``click()`` its button without a browser.
"""
from __future__ import annotations

import html
import types
import typing
from typing import Any

import ipywidgets as W
import yaml
from IPython.display import clear_output, display

from dapt.ui import explore
from dapt.core.errors import DaptError
from dapt.core.records import run_dir

_WIDE = {"description_width": "120px"}
_LAYOUT = {"width": "640px"}


def _optional(stage: str, key: str) -> bool:
    kind = typing.get_type_hints(explore.config.stage_config(stage))[key]
    return typing.get_origin(kind) in (typing.Union, types.UnionType)


def _knob(stage: str, key: str, value: Any) -> W.Widget:
    """IntText / FloatText for a number; Text (empty = the default, None) for an optional one."""
    help_text = explore.field(stage, key).metadata.get("help", "")
    common = dict(description=key, tooltip=help_text, style=_WIDE)
    if _optional(stage, key):
        return W.Text(value="" if value is None else str(value), placeholder="default", **common)
    if isinstance(value, int):
        return W.IntText(value=value, **common)
    return W.FloatText(value=value, **common)


def _knob_value(widget: W.Widget) -> Any:
    if isinstance(widget, W.Text):
        return None if not widget.value.strip() else yaml.safe_load(widget.value)
    return widget.value


class Explorer:
    """Dropdowns for the study, the stage and each of its choices, knobs, and a Run button."""

    def __init__(self, study_file: str | None = None, stage: str = "distill", values: dict | None = None):
        studies = explore.study_files()
        self.study = W.Dropdown(options=studies, value=study_file if study_file in studies else (studies or [None])[0],
                                description="study", style=_WIDE, layout=_LAYOUT)
        self.stage = W.Dropdown(options=explore.explorable_stages(), value=stage, description="stage", style=_WIDE)
        self.name = W.Text(description="run name", placeholder="explore_<student>_<distiller>", style=_WIDE)
        self.force = W.Checkbox(False, description="replace a finished run", indent=False)
        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.status = W.HTML()
        self.output = W.Output()
        self.fields: dict[str, W.Widget] = {}
        self.form = W.VBox()
        self.view = W.VBox([W.HBox([self.study, self.stage]), self.form,
                            W.HBox([self.name, self.force, self.run_button]), self.status, self.output])
        self.study.observe(lambda _: self._build(), "value")
        self.stage.observe(lambda _: self._build(), "value")
        self.run_button.on_click(self.run)
        self._build(values or {})

    @property
    def study_name(self) -> str:
        return explore.defaults_for(self.study.value, self.stage.value)[0]

    def _build(self, values: dict | None = None) -> None:
        """(Re)build the stage's dropdowns and knobs, preset from the study's defaults and ``values``."""
        stage = self.stage.value
        try:
            study, start = explore.defaults_for(self.study.value, stage)
        except DaptError as err:
            self._say(str(err), error=True)
            self.form.children = ()
            return
        start.update(values or {})
        self.fields = {}
        for key in explore.choice_fields(stage):
            options = explore.options(stage, key, study, start.get("dataset"))
            wanted = start.get(key)
            known = [value for _, value in options]
            if wanted not in known and isinstance(wanted, str) and "/" not in wanted:
                wanted = run_dir(study, wanted).as_posix()  # a reference written as a run name
            reference = explore.field(stage, key).metadata.get("ref")
            if wanted not in known or (reference and wanted is None):  # a reference: the first finished run
                wanted = known[1] if reference and len(known) > 1 else known[0]
            self.fields[key] = W.Dropdown(options=options, value=wanted, description=key, style=_WIDE, layout=_LAYOUT,
                                          tooltip=explore.field(stage, key).metadata.get("help", ""))
        for key in explore.knob_fields(stage):
            self.fields[key] = _knob(stage, key, start.get(key))
        if "dataset" in self.fields:
            self.fields["dataset"].observe(lambda _: self._refresh_references(), "value")
        self.form.children = tuple(self.fields.values())
        self._say(f"study {study}: a run is recorded in runs/{study}/&lt;run name&gt;/")

    def _refresh_references(self) -> None:
        """A reference lists only the finished runs on the chosen dataset."""
        study, stage = self.study_name, self.stage.value
        for key in explore.choice_fields(stage):
            if explore.field(stage, key).metadata.get("ref"):
                self.fields[key].options = explore.options(stage, key, study, self.fields["dataset"].value)

    def values(self) -> dict[str, Any]:
        knobs = explore.knob_fields(self.stage.value)
        return {key: _knob_value(w) if key in knobs else w.value for key, w in self.fields.items()}

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#b00020" if error else "#333"
        self.status.value = f'<span style="color:{colour}">{text if not error else html.escape(text)}</span>'

    def run(self, _button: Any = None) -> str | None:
        """Validate the chosen run like a params file, execute it with progress in the output, then show
        its numbers and the study's agreement plots with it among the other runs. Returns its status."""
        stage = self.stage.value
        try:
            values = self.values()
            name = self.name.value.strip() or explore.default_name(stage, values)
            study = self.study_name
            self.output.clear_output()
            self._say(f"running {stage} {name} -> runs/{study}/{name}/ ...")
            with self.output:
                status = explore.execute(self.study.value, stage, name, values, force=self.force.value)
        except (DaptError, yaml.YAMLError) as err:
            self._say(f"{err}", error=True)
            return None
        self._say(f"{stage} {name}: {status}" + (f" — see runs/{study}/{name}/notebook.ipynb" if status != "done" else ""),
                  error=status != "done")
        text, figures = explore.outcome(study, name)
        with self.output:
            clear_output(wait=True)
            print(text)
            for figure in figures:
                display(figure)
        return status
