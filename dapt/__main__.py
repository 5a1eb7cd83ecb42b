"""``python -m dapt``: the ``dapt`` command, also as ``torchrun --nproc_per_node=N -m dapt run FILE``."""
import sys

from dapt.cli import main

sys.exit(main())
