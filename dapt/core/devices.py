"""The ``device`` a run computes on, checked before it starts: its syntax, its presence on this
machine, and what ``amp`` and ``compile`` need from it.

``device``: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
The checks a params file's usual values need (``auto`` or ``cpu``, ``amp`` off or bf16, no
``compile``) read only the string, so ``dapt run --dry-run`` validates a study without torch;
torch is imported where the answer is the machine's (an explicit ``cuda``/``mps``, fp16 with
``auto``, ``compile``). fp16 on the CPU is refused: without native half-precision kernels a
training step runs many times slower than in float32, while ``bf16`` has them.
"""
from __future__ import annotations

import importlib.util
import re
from typing import TYPE_CHECKING

from dapt.core.errors import DaptError

if TYPE_CHECKING:
    import torch

DEVICE_SYNTAX = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device_syntax(name: str) -> None:
    if not DEVICE_SYNTAX.fullmatch(str(name)):
        raise DaptError(f"device: {name!r} is not one of: auto, cpu, cuda, cuda:N (N = 0, 1, ...), mps")


def available_devices() -> list[str]:
    """What this machine computes on, e.g. ``['cpu']`` or ``['cpu', 'cuda:0', 'cuda:1']``."""
    import torch  # the machine's devices are torch's to tell

    found = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return found + (["mps"] if torch.backends.mps.is_available() else [])


def resolve_device(name: str) -> "torch.device":
    """``device`` as a ``torch.device`` present on this machine; one ``DaptError`` line otherwise."""
    check_device_syntax(name)
    import torch  # the answer is a torch.device, and presence is torch's to tell

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    present = available_devices()
    if device.type == "cuda" and device.index is None:
        ok = torch.cuda.is_available()
    else:
        ok = str(device) in present
    if not ok:
        raise DaptError(f"device: {name!r} is not present on this machine (it has: {', '.join(present)}); "
                        f"use device: auto (CUDA when present, else the CPU) or device: cpu")
    return device


def check_placement(device: str, amp: str, compile: bool = False) -> None:
    """Everything about ``device``, ``amp`` and ``compile`` that can be checked before a run starts."""
    check_device_syntax(device)
    if device == "cpu":
        device_type = "cpu"
    elif device == "auto" and amp != "fp16" and not compile:
        return  # valid wherever it runs: neither amp nor compile depends on what auto picks
    else:
        device_type = resolve_device(device).type
    check_precision(device, device_type, amp, compile)


def check_precision(device: str, device_type: str, amp: str, compile: bool) -> None:
    """``amp`` and ``compile`` on a device of ``device_type`` (the type ``device`` resolved to)."""
    if amp == "fp16" and device_type == "cpu":
        raise DaptError(f"amp: fp16 on the CPU (device: {device}) has no native half-precision kernels and runs "
                        f"many times slower than float32; use amp: bf16 on the CPU, or off")
    if compile:
        _check_compiler(device_type)


def _check_compiler(device_type: str) -> None:
    """torch.compile's Inductor compiles C++ for the CPU and Triton kernels for CUDA: either must be here."""
    if device_type == "cuda" and importlib.util.find_spec("triton") is None:
        raise DaptError("compile: true on CUDA needs the triton package (pip install triton); or set compile: false")
    if device_type == "cpu":
        try:  # torch's own compiler lookup, so a run that passes here compiles the same way
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception as err:  # its error types are private and change between torch versions
            raise DaptError(f"compile: true on the CPU needs a C++ compiler for torch.compile and found none "
                            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); install g++ "
                            f"(or set CXX), or set compile: false") from None


def device_memory(name: str) -> int:
    """Bytes of memory of the accelerator ``device`` names (an explicit ``cuda`` or ``cuda:N``)."""
    import torch  # the device's memory is torch's to tell

    device = resolve_device(name)
    return torch.cuda.get_device_properties(device.index or 0).total_memory
