"""Which process of a run am I: torchrun's ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK``, read without torch,
so the command line and the run records know it without importing the training code.
Outside torchrun: one process, rank 0. The process group itself is ``dapt.core.distributed``'s job."""
from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True in the process that writes the records: rank 0, or the only process."""
    return rank() == 0


# Stages whose notebook trains data-parallel on every rank; the others run on rank 0 alone.
DDP_STAGES = ("teacher", "distill")
