"""What this machine has for a run: its memory, as the kernel and a container's memory limit allow."""
from __future__ import annotations

import os
from pathlib import Path

# cgroup v2, then v1: a container sees the host's MemTotal, but may use only its own limit
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def memory_bytes() -> int | None:
    """Bytes of memory a process here may use: the machine's, or a container's limit when lower; None if unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return None
    for path in _CGROUP_LIMITS:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" (v2) or a huge number (v1) mean no limit
            total = min(total, int(text))
    return total


def size_text(n: float) -> str:
    """Bytes in the unit a reader takes in at once: 512 MB, 1.4 GB, 2,183 TB."""
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" or n >= 10 else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.3g} TB" if n >= 1e6 else f"{n:,.0f} TB" if n >= 10 else f"{n:.1f} TB"
