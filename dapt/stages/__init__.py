"""One module per stage notebook: ``teacher``, ``distill``, ``generate`` (with its ``ddpm`` and
``stable_diffusion`` generators), and ``notebook``, which opens a stage's run record from its
parameters cell.

Imports everything below it (``training``, ``analysis``, ``plots``, ``data``, ``models``,
``distillers``, ``core``) and ``pipeline.config`` (the params schema). No stage imports another;
``generate`` imports its two generators, and ``timing`` (``dapt run --timing``, with ``pipeline.study`` and
``pipeline.projection``) trains the teacher and distill stages briefly to time them.
"""
