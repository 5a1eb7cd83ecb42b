"""Progress bars that show while someone watches and leave nothing in a recorded notebook.

``dapt run`` records each run: papermill keeps every byte the kernel prints in the executed notebook, the
report users read, and a bar redrawn with carriage returns leaves a fragment there at each redraw. So the
runner starts its kernels with ``DAPT_PROGRESS=off`` (``RECORDED``): no bar, and the loops' own lines (one
per epoch, a stage's summary lines) are the record; the runner echoes them as they come (``log_output``),
the live progress of a batch run. Anywhere else ``tqdm.auto``: a widget in a JupyterLab kernel, a text bar in
a terminal.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Iterable

ENV = "DAPT_PROGRESS"
RECORDED = {ENV: "off"}  # the environment of a kernel whose output is recorded


def recorded() -> bool:
    """Whether this process's output is recorded (``DAPT_PROGRESS=off``), so no bar may be drawn."""
    return os.environ.get(ENV, "").strip().lower() == "off"


def progress(iterable: Iterable | None = None, **options: Any):
    """A ``tqdm.auto`` bar over ``iterable`` (or updated by hand, given ``total``), redrawn at most every 2 s;
    drawn nowhere in a recorded run. Its ``write`` prints a line above it either way."""
    from tqdm.auto import tqdm

    options = {"mininterval": 2.0, "file": sys.stdout, **options}
    # disable is passed only to turn a bar off: an explicit False would override a user's TQDM_DISABLE=1
    if options.pop("disable", False) or recorded():
        options["disable"] = True
    return tqdm(iterable, **options)
