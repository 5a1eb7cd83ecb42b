"""The training machinery every stage shares: the ``Trainer`` a training stage subclasses (``trainer``),
data, batches and evaluation around it (``loop``), optimizers and schedules, checkpoints, device
placement and precision, the teacher cache and the agreement metrics between a student and its teacher.

Imports ``core``, ``data``, ``models`` and ``distillers``.
"""
