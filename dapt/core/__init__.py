"""What every other package stands on: errors, registries, typed params fields, atomic file i/o,
run records, experiment tracking, process ranks, progress bars that stay out of recorded notebooks
(``progress``), the device checks a params file needs (``devices``), the Hugging Face hub check
(``hub``) and the claims a study tests, with the decision rule a study file states on one (``claims``).

Imports nothing from the rest of dapt. Torch-free except ``torch_files`` and ``distributed``,
which the pipeline never imports, and ``devices``, which imports torch only where the answer is
the machine's (an explicit ``cuda`` or ``mps``, fp16 with ``auto``, ``compile``).
"""
