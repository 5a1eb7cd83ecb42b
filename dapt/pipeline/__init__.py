"""From a study file to executed notebooks: params schema and validation (``config``), study files
(``study``), run order (``schedule``), the local runner and the Ray executor, papermill.

Imports ``core`` and the torch-free catalogs of ``data``, ``models`` and ``distillers`` (their
names, fields and metadata), never torch or the training code: ``dapt status``, ``dapt list`` and
``dapt run --dry-run`` answer without loading torch. Stage notebooks import what they need.
"""
