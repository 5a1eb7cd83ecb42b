"""What every other package stands on: errors, registries, typed params fields, atomic file i/o,
run records, experiment tracking and process ranks.

Imports nothing from the rest of dapt. Torch-free except ``torch_files`` and ``distributed``,
which the pipeline never imports.
"""
