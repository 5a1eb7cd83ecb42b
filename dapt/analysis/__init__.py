"""Reading a study from its run records: the rows of every ``metrics.json`` (``rows``), runs grouped into
configurations over seeds (``configurations``), Welch comparisons (``compare``), the plateau rule and the
epoch budget (``budget``) on the per-epoch curves (``curves``: which images they are on), the teacher margin
(``margin``), all computed once into a ``summary.Summary``;
``render`` writes it as Markdown tables and short sentences, ``results`` for ``dapt report`` and the docs.

Imports only ``core``; torch-free.
"""
