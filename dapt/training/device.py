"""Where and in what precision a run computes: its device, mixed precision and compilation.

``device``: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``,
checked before a run starts by ``dapt.core.devices``. Datasets stay uint8 tensors in host memory;
each batch moves to the device on its own (a uint8 batch is a quarter of its float32 size),
through pinned memory and a non-blocking copy on CUDA, and with no copy at all on the CPU.

``amp`` (mixed precision, Micikevicius et al. 2018): the forward pass and the loss run under
``torch.autocast``, which computes matrix products and convolutions in a 16-bit type while
weights, optimizer state and reductions stay float32. ``bf16`` keeps float32's 8 exponent bits
and needs nothing more. ``fp16`` has 5: gradients below ~6e-8 flush to zero, so the loss is
multiplied by a scale S before ``backward`` and the gradients divided by S before the step
(``torch.amp.GradScaler``: a step whose gradients hold inf/nan is skipped and S halved; S doubles
after 2000 clean steps). fp16 on the CPU is refused (``dapt.core.devices``).

``compile``: ``torch.compile`` (TorchInductor) on the model's body, in place, so its state-dict
keys and checkpoints are those of the eager model.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from dapt.core.devices import check_precision, resolve_device
from dapt.core.errors import DaptError
from dapt.core.provenance import cpu_model
from dapt.core.ranks import local_rank, world_size

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def run_device(name: str) -> torch.device:
    """The device a run asking for ``device: name`` computes on: ``resolve_device``, and under torchrun each
    process's own GPU (``cuda:LOCAL_RANK``)."""
    device = resolve_device(name)
    if device.type == "cuda" and world_size() > 1:
        device = torch.device("cuda", local_rank())
    return device


def device_name(device: torch.device) -> str:
    """What a run's provenance calls ``device``: the GPU's name on CUDA, the CPU model on the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple GPU (mps) of {cpu_model()}"
    return cpu_model()


def dtype_name(dtype: Optional[torch.dtype]) -> str:
    """``float32``, ``bfloat16`` or ``float16``: a precision as the provenance records it (None: float32)."""
    return str(dtype or torch.float32).removeprefix("torch.")


def device_of(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (the CPU for a module without any)."""
    first = next(module.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``: the same tensor when it is already there (no copy on the CPU); on CUDA
    through pinned host memory with a non-blocking copy, which overlaps the copy with compute."""
    if x.device == device:
        return x
    if device.type == "cuda":  # CUDA only: page-locked memory is what makes the copy asynchronous
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def teacher_dtype(teacher_amp: str, device: torch.device) -> torch.dtype:
    """The precision of a frozen teacher's forward passes (``teacher_amp``) on ``device``. ``auto`` picks what
    the device computes natively, the fastest there (benchmarks/results/teacher_precision.md): bf16 on CUDA
    that has it and on CPUs with AVX512-BF16 or AMX,
    fp16 on older CUDA and mps, float32 elsewhere. A teacher needs no loss scaling, only its outputs."""
    if teacher_amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        if device.type == "cpu" and _cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if teacher_amp == "fp16" and device.type == "cpu":
        raise DaptError("teacher_amp: fp16 on the CPU has no native half-precision kernels and runs many times "
                        "slower than float32; use teacher_amp: auto or bf16 on the CPU, or off")
    return AMP_DTYPES.get(teacher_amp, torch.float32)


def _cpu_has_native_bf16() -> bool:
    # torch.cpu's probes are private and may move between versions: without them, float32 is the safe answer
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


@dataclass
class Placement:
    """A run's device, autocast, loss scaling and compilation, asked by the training loop per step."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: str = "off"
    compile: bool = False
    scaler: Optional[torch.amp.GradScaler] = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.dtype = AMP_DTYPES.get(self.amp)
        if self.amp == "fp16":  # bf16 has float32's exponent range: no scaling needed
            self.scaler = torch.amp.GradScaler(self.device.type)

    @classmethod
    def of(cls, cfg) -> "Placement":
        """The placement a stage config asks for (``compile`` only where the stage has it)."""
        compile = bool(getattr(cfg, "compile", False))
        device = run_device(cfg.device)  # under torchrun: one GPU per process, cuda:LOCAL_RANK
        check_precision(cfg.device, device.type, cfg.amp, compile)
        return cls(device, cfg.amp, compile)

    @property
    def precision(self) -> str:
        """What the steps compute in under ``autocast``: ``float32`` (amp off), ``bfloat16`` or ``float16``."""
        return dtype_name(self.dtype)

    def describe(self) -> dict[str, Any]:
        """The device and torch's CPU threads as a run's provenance records them (``RunRecord.complete_provenance``'s
        arguments)."""
        return {"device": str(self.device), "device_name": device_name(self.device), "threads": torch.get_num_threads()}

    def autocast(self):
        """The context the forward pass and loss run in: autocast to ``amp``'s type, or nothing."""
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        return to_device(x, self.device)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, clip: Optional[float] = None) -> None:
        """``optimizer.step()``, through the GradScaler with fp16; ``clip`` bounds the gradients' total
        norm, measured on the unscaled gradients."""
        if self.scaler is not None:
            if clip is not None:
                self.scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip)
            self.scaler.step(optimizer)  # skipped when the gradients hold inf/nan
            self.scaler.update()
            return
        if clip is not None:
            nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip)
        optimizer.step()

    def compile_model(self, model: nn.Module) -> nn.Module:
        """With ``compile``, ``torch.compile`` the model's ``body`` (the whole model if it has none) in
        place: forward passes run compiled, state-dict keys stay those of the eager model."""
        if self.compile:
            getattr(model, "body", model).compile()
        return model

    def resume_state(self) -> dict:
        """What ``last.pt`` keeps of the placement: the GradScaler's scale, and CUDA's random stream
        (dropout on CUDA draws from it, not from the CPU's)."""
        state = {}
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_resume_state(self, state: dict) -> None:
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
