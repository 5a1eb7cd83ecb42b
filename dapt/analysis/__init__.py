"""Reading a study from its run records: the rows of every ``metrics.json`` with what recorded them (``rows``),
runs grouped into configurations over seeds (``configurations``), comparisons with their intervals, judged by
Holm-adjusted Welch p over the study's family (``compare``), the plateau rule and the epoch budget (``budget``)
on the per-epoch curves (``curves``: which images they are on), the teacher's lead over the pre-trained model
(``headroom``), all computed once into a ``summary.Summary``; the study's decision rule evaluated on it
(``decision``); ``render`` writes it as answers, Markdown tables and short sentences, ``results`` for
``dapt report`` and the docs.

Imports only ``core``; torch-free.
"""
