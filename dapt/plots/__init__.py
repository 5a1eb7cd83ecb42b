"""Matplotlib figures: of a run (``run``), a study (``study``), seeds (``seeds``) and a generate
run (``generate``), on the helpers in ``common``.

Imports ``core`` and ``analysis``. Only ``generate`` imports torch (it draws image tensors).
"""
