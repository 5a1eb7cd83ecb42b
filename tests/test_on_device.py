"""The tests that take a device: ``DAPT_TEST_DEVICE`` (default ``cpu``; ``cuda``, ``cuda:N`` or ``mps``) is where
they compute. On the CPU they pass as they are (only the fp16 parts skip: fp16 is refused on the CPU); on a GPU
they run the same code there: the losses forward and backward, bf16 and fp16 autocast (the GradScaler path),
a batch's move to the device, ``teacher_amp: auto``, and a tiny teacher and students (cached and live) on digits.

    DAPT_TEST_DEVICE=cuda .venv/bin/pytest -m device tests/test_on_device.py     # what benchmarks/gpu_check.sh runs
"""
from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from dapt.core import files
from dapt.core import records as runs
from dapt.distillers.losses import align_loss, kd_loss, uniform_loss
from dapt.pipeline import config
from dapt.stages.distill import distill
from dapt.stages.teacher import train_teacher
from dapt.training.device import Placement, teacher_dtype, to_device

pytestmark = [pytest.mark.device, pytest.mark.slow]  # trains on the device: slow on a CPU

DEVICE_NAME = os.environ.get("DAPT_TEST_DEVICE", "cpu")


@pytest.fixture(scope="module")
def device() -> torch.device:
    """The device under test; a clear failure when ``DAPT_TEST_DEVICE`` names one this machine lacks."""
    from dapt.core.devices import resolve_device
    from dapt.core.errors import DaptError

    try:
        return resolve_device(DEVICE_NAME)
    except DaptError as err:
        pytest.fail(f"DAPT_TEST_DEVICE={DEVICE_NAME}: {err}")


def needs_fp16(device: torch.device) -> None:
    if device.type == "cpu":
        pytest.skip("fp16 is refused on the CPU (no native half-precision kernels); runs on cuda")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.body(x))


def test_kd_and_align_uniform_losses_forward_and_backward_on_the_device(device):
    """KD, alignment and uniformity on the device equal float64 on the CPU, and their gradients land there."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(32, 10, generator=g), torch.randn(32, 10, generator=g)
    p_s = nn.functional.normalize(torch.randn(32, 16, generator=g), dim=1)
    p_t = nn.functional.normalize(torch.randn(32, 16, generator=g), dim=1)

    def losses(s, t, p_s, p_t):
        return kd_loss(s, t, 4.0), align_loss(p_s, p_t, 2.0), uniform_loss(p_s, 2.0)

    reference = [x.item() for x in losses(s.double(), t.double(), p_s.double(), p_t.double())]
    s_dev, p_dev = s.to(device).requires_grad_(), p_s.to(device).requires_grad_()
    on_device = losses(s_dev, t.to(device), p_dev, p_t.to(device))
    sum(on_device).backward()
    sync(device)
    assert all(x.device.type == device.type for x in on_device)
    assert [x.item() for x in on_device] == [pytest.approx(r, rel=1e-4, abs=1e-6) for r in reference]
    assert s_dev.grad.device.type == device.type and torch.isfinite(s_dev.grad).all()
    assert p_dev.grad.device.type == device.type and torch.isfinite(p_dev.grad).all() and p_dev.grad.abs().sum() > 0


def test_a_uint8_batch_moves_to_the_device_with_its_values(device):
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    moved = to_device(x, device)
    sync(device)
    assert moved.device.type == device.type and moved.dtype == torch.uint8 and torch.equal(moved.cpu(), x)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_computes_in_16_bits_and_the_step_keeps_float32_weights(device, amp):
    """``Placement`` on the device: the convolution runs in the 16-bit type under autocast, weights and
    gradients stay float32, the step moves the weights (fp16: through the GradScaler, gradients unscaled
    before the step, equal to float32's to the type's precision)."""
    if amp == "fp16":
        needs_fp16(device)
    torch.manual_seed(0)
    model = Tiny().to(device)
    reference = Tiny().to(device)
    reference.load_state_dict(model.state_dict())
    place = Placement(device, amp)
    assert (place.scaler is not None) == (amp == "fp16")
    seen = []
    model.body[0].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    x = torch.rand(16, 3, 16, 16).to(device)
    y = torch.randint(0, 10, (16,)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    with place.autocast():
        loss = nn.functional.cross_entropy(model(x), y)
    place.backward(loss)
    nn.functional.cross_entropy(reference(x), y).backward()
    place.step(optimizer, clip=10.0)
    sync(device)
    assert seen == [{"bf16": torch.bfloat16, "fp16": torch.float16}[amp]]
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    assert all(p.dtype == torch.float32 and p.device.type == device.type for p in model.parameters())
    assert all(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))
    tolerance = {"bf16": 5e-2, "fp16": 5e-3}[amp]
    grad, ref = model.head.weight.grad, reference.head.weight.grad
    assert (grad - ref).abs().max() <= tolerance * ref.abs().max(), "gradients must reach the step unscaled"


def test_fp16_loss_scaling_skips_an_overflowing_step_on_the_device(device):
    needs_fp16(device)
    place = Placement(device, "fp16")
    layer = nn.Linear(3, 1).to(device)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    before = layer.weight.detach().clone()
    with place.autocast():
        loss = layer(torch.full((2, 3), float("inf"), device=device)).float().sum()
    place.backward(loss)
    place.step(optimizer)
    sync(device)
    assert torch.equal(layer.weight.detach(), before), "a step with inf gradients must be skipped"
    assert place.scaler.get_scale() == 2.0 ** 15


def test_teacher_amp_auto_is_what_the_device_computes_natively(device):
    """``teacher_dtype("auto", device)``: bf16 on a CUDA device that has it (Ampere and later: an H100/H200
    is), fp16 on older CUDA, bf16 or float32 on the CPU by its instructions."""
    chosen = teacher_dtype("auto", device)
    if device.type == "cuda":
        assert chosen == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        if torch.cuda.get_device_capability(device) >= (8, 0):
            assert chosen == torch.bfloat16
        assert teacher_dtype("fp16", device) == torch.float16
    elif device.type == "cpu":
        has_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        assert chosen == (torch.bfloat16 if has_bf16 else torch.float32)
    x = torch.rand(4, 3, 16, 16, device=device)
    with torch.autocast(device.type, dtype=chosen, enabled=chosen != torch.float32):
        out = nn.Conv2d(3, 4, 3).to(device)(x)
    assert out.dtype == chosen


def cfg_for(kind, folder, **values):
    base = {"dataset": "digits", "image_size": 16, "train_subset": 300, "batch_size": 50, "precise_bn": None,
            "device": DEVICE_NAME, "run_dir": str(folder)}
    cls = config.TeacherConfig if kind == "teacher" else config.DistillConfig
    return config.validate(cls, {**base, **values})


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, digits, without_onednn):
    """A ResNet-18 teacher trained on the device in bf16 for 1 epoch on 300 digits."""
    folder = tmp_path_factory.mktemp("device-teacher")
    cfg = cfg_for("teacher", folder, model="resnet18", init="fr", epochs=1, lr=3e-3, amp="bf16")
    record = runs.RunRecord.start(folder, "teacher", config.as_dict(cfg))
    with without_onednn():
        model = train_teacher(cfg, digits, record)
    record.finish()
    return folder, model


def test_a_teacher_trains_on_the_device(teacher_run, device):
    folder, model = teacher_run
    metrics = files.read_json(folder / "metrics.json")
    assert metrics["status"] == "done" and torch.device(metrics["device"]).type == device.type
    assert all(math.isfinite(e["train_loss"]) for e in metrics["history"])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # its provenance names the device (the GPU's own name on CUDA) and the autocast type it trained in
    record = metrics["provenance"]
    assert torch.device(record["device"]).type == device.type and record["precision"] == {"teacher": "bfloat16"}
    if device.type == "cuda":
        assert record["device_name"] == torch.cuda.get_device_name(torch.device(record["device"]))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("cache", ["on", "off"])
def test_a_student_distils_on_the_device_from_the_cached_and_the_live_teacher(teacher_run, digits, device, tmp_path,
                                                                             without_onednn, cache, amp):
    """A KD student, 1 epoch on the device with the teacher's targets from the cache or live, the teacher in
    ``teacher_amp: auto``: it finishes with finite losses, records the device and the teacher's precision,
    and its predictions come back to the CPU as float32."""
    if amp == "fp16":
        needs_fp16(device)
    teacher_dir, _ = teacher_run
    cfg = cfg_for("distill", tmp_path / cache, student="resnet18", teacher=str(teacher_dir), distiller="kd",
                  epochs=1, amp=amp, teacher_cache=cache, teacher_amp="auto")
    record = runs.RunRecord.start(cfg.run_dir, "distill", config.as_dict(cfg))
    with without_onednn():
        result = distill(cfg, digits, record)
    record.finish()
    metrics = files.read_json(tmp_path / cache / "metrics.json")
    assert metrics["status"] == "done" and torch.device(metrics["device"]).type == device.type
    assert metrics["teacher_precision"] == str(teacher_dtype("auto", device)).removeprefix("torch.")
    assert metrics["provenance"]["precision"] == {"teacher": metrics["teacher_precision"],
                                                  "student": {"bf16": "bfloat16", "fp16": "float16"}[amp]}
    assert all(math.isfinite(e["train_loss"]) and math.isfinite(e["loss_kd"]) for e in metrics["history"])
    assert result.student_logits.dtype == torch.float32 and result.student_logits.device.type == "cpu"
    assert 0.0 <= metrics["test_acc"] <= 1.0


def test_cached_and_live_targets_agree_on_the_device(teacher_run, digits, device, tmp_path):
    """Two KD students that stay where they start (lr 1e-12), one from the cache and one live, in the teacher's
    ``auto`` precision on the device: every epoch's KD term agrees to the cache's fp16 rounding (a looser
    bound on CUDA, whose kernels may pick other algorithms between the runs)."""
    teacher_dir, _ = teacher_run
    history = {}
    for cache in ("on", "off"):
        cfg = cfg_for("distill", tmp_path / cache, student="resnet18", teacher=str(teacher_dir), distiller="kd",
                      epochs=2, lr=1e-12, teacher_cache=cache, teacher_amp="auto")
        record = runs.RunRecord.start(cfg.run_dir, "distill", config.as_dict(cfg))
        distill(cfg, digits, record)
        record.finish()
        history[cache] = [e["loss_kd"] for e in record.metrics["history"]]
    rel = 2e-3 if device.type == "cpu" else 1e-2
    assert history["on"] == [pytest.approx(live, rel=rel) for live in history["off"]]
