"""Devices, mixed precision and compilation (dapt.core.devices, dapt.training.device) on this CPU-only machine: device
resolution and its errors, bf16 training that really computes in bf16, fp16 loss scaling, checkpoints
written on another device, torch.compile."""
from __future__ import annotations

import math

import pytest
import torch
import torch.serialization
from torch import nn

from dapt.pipeline import config
from dapt.core import records as runs
from dapt.core import files
from dapt.training.checkpoint import load_model, save_model
from dapt.core.devices import check_placement, resolve_device
from dapt.training.device import Placement, to_device
from dapt.core.errors import DaptError
from dapt.models.nets import create_model
from dapt.stages.teacher import train_teacher
from dapt.training.loop import predict

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without CUDA answers")


def test_auto_is_cuda_when_present_else_the_cpu():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "CPU", "cuda:", "cuda:x", "cuda0", "cuda:-1", " cpu", "tpu:0"])
def test_a_device_name_of_no_known_form_is_one_line(name):
    with pytest.raises(DaptError, match=r"^device: .* is not one of: auto, cpu, cuda, cuda:N \(N = 0, 1, \.\.\.\), mps$"):
        resolve_device(name)


@NO_CUDA
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_on_a_machine_without_it_names_what_is_here_and_the_fix(name):
    with pytest.raises(DaptError) as err:
        resolve_device(name)
    assert str(err.value) == (f"device: {name!r} is not present on this machine (it has: cpu); use device: auto "
                              f"(CUDA when present, else the CPU) or device: cpu")


def test_fp16_on_the_cpu_is_refused_and_bf16_accepted():
    with pytest.raises(DaptError, match="amp: fp16 on the CPU .* use amp: bf16 on the CPU, or off"):
        check_placement("cpu", "fp16")
    check_placement("cpu", "bf16")


@pytest.mark.parametrize("device, amp", [("auto", "off"), ("auto", "bf16"), ("cpu", "off"), ("cpu", "bf16")])
def test_a_params_files_usual_placement_is_checked_without_torch(device, amp):
    """`dapt run --dry-run` validates auto/cpu placements from the strings alone; torch is imported only
    where the answer is the machine's (explicit cuda/mps, fp16 with auto, compile)."""
    import subprocess
    import sys

    code = (f"import sys; from dapt.core.devices import check_placement; check_placement({device!r}, {amp!r}); "
            f"assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_yaml_off_read_as_false_still_means_off():
    """PyYAML reads a bare ``amp: off`` (and ``teacher_cache: off``) as false."""
    cfg = config.validate(config.DistillConfig, {"amp": False, "teacher_cache": False, "distiller": "none"})
    assert cfg.amp == "off" and cfg.teacher_cache == "off"
    with pytest.raises(config.ConfigError, match="amp must be a string, got True"):
        config.validate(config.TeacherConfig, {"amp": True})  # "on" is no amp choice


def test_a_missing_cpp_compiler_for_compile_is_one_line():
    import torch._inductor.config as inductor

    with inductor.patch({"cpp.cxx": ("/nonexistent/g++",)}):  # Inductor's own override, undone on exit
        with pytest.raises(DaptError, match=r"^compile: true on the CPU needs a C\+\+ compiler .* set compile: false$"):
            check_placement("cpu", "off", compile=True)


def test_to_device_on_the_cpu_is_the_tensor_itself():
    x = torch.zeros(2, 3, dtype=torch.uint8)
    assert to_device(x, torch.device("cpu")) is x
    assert Placement().to_device(x) is x


def cfg_for(kind, tmp_path, **values):
    base = {"dataset": "digits", "image_size": 16, "train_subset": 300, "batch_size": 50, "precise_bn": 200,
            "device": "cpu", "run_dir": str(tmp_path / kind)}
    cls = config.TeacherConfig if kind == "teacher" else config.DistillConfig
    return config.validate(cls, {**base, **values})


@pytest.mark.slow  # trains a teacher
def test_bf16_training_computes_in_bf16_and_learns(tmp_path, digits, monkeypatch, without_onednn):
    """A teacher trained with amp: bf16 on the CPU: its convolutions run in bf16 in every training step
    (seen by a hook on the real model), its weights stay float32, its loss is finite and it learns the
    digits far above chance; precise BN and evaluation run in float32. (A bf16 KD student of a cached and of a
    live teacher: test_on_device.)"""
    cfg = cfg_for("teacher", tmp_path, model="resnet18", init="fr", epochs=3, lr=3e-3, amp="bf16")
    seen = []  # (autocast on, output dtype) of the first convolution, per forward pass
    real_create = create_model

    def create_and_watch(*args, **kwargs):
        model = real_create(*args, **kwargs)
        model.body.conv1.register_forward_hook(
            lambda m, i, out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype)))
        return model

    import dapt.stages.teacher as T

    monkeypatch.setattr(T, "create_model", create_and_watch)
    record = runs.RunRecord.start(cfg.run_dir, "teacher", config.as_dict(cfg))
    with without_onednn():
        model = train_teacher(cfg, digits, record)
    record.finish()
    steps = cfg.epochs * (300 // cfg.batch_size)
    assert [dtype for autocast, dtype in seen if autocast] == [torch.bfloat16] * steps
    assert {dtype for autocast, dtype in seen if not autocast} == {torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    metrics = files.read_json(tmp_path / "teacher" / "metrics.json")
    assert metrics["device"] == "cpu"
    assert all(math.isfinite(e["train_loss"]) for e in metrics["history"])
    assert metrics["test_acc"] > 0.25, metrics["test_acc"]  # 10 classes: chance is 0.1 (0.39 measured)


def test_fp16_loss_scaling_skips_overflowing_steps_and_its_state_resumes():
    """The GradScaler path (what amp: fp16 uses on CUDA), run on the CPU: gradients reach the optimizer
    unscaled, a step with inf gradients is skipped and halves the scale, and last.pt's share of the
    placement restores the scale."""
    place = Placement(torch.device("cpu"), "fp16")  # built directly: fp16 on the CPU is refused in configs
    assert place.scaler is not None and place.scaler.get_scale() == 2.0 ** 16
    layer = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
    optimizer = torch.optim.SGD(layer.parameters(), lr=100.0)
    x = torch.tensor([[1.0, 2.0, 3.0]]) * 1e-3
    # loss = (w·x)², dloss/dw = 2 (w·x) x; w·x = -1.5e-3, so the gradient is -3e-3 x (~1e-5: fp16 keeps
    # only a few bits of it unscaled)
    with place.autocast():
        loss = layer(x).float().pow(2).sum()
    place.backward(loss)
    assert torch.allclose(layer.weight.grad, -3e-3 * x * 2.0 ** 16, rtol=1e-2)  # scaled by S = 2^16
    place.step(optimizer)
    assert torch.allclose(layer.weight.grad, -3e-3 * x, rtol=1e-2)  # unscaled before the step
    assert torch.allclose(layer.weight.detach(), torch.tensor([[1.0003, -1.9994, 0.5009]]), atol=1e-5)
    before = layer.weight.detach().clone()
    optimizer.zero_grad()
    place.backward(layer(x * float("inf")).float().sum())
    place.step(optimizer)
    assert torch.equal(layer.weight.detach(), before), "a step with inf gradients must be skipped"
    assert place.scaler.get_scale() == 2.0 ** 15
    state = place.resume_state()
    again = Placement(torch.device("cpu"), "fp16")
    again.load_resume_state(state)
    assert again.scaler.get_scale() == 2.0 ** 15
    assert Placement().resume_state() == {}  # nothing extra in last.pt on the CPU in float32


def test_a_model_saved_on_another_device_loads_on_the_cpu(tmp_path):
    """A model.pt written on a GPU machine records its tensors as cuda:0; it loads here (map_location)."""
    model = create_model("resnet18", 10, image_size=16).eval()
    registry = torch.serialization._package_registry
    entry = (-1, lambda storage: "cuda:0", lambda storage, location: None)  # tag every storage as cuda:0
    registry.insert(0, entry)
    try:
        save_model(tmp_path / "model.pt", model, {"model": "resnet18", "num_classes": 10, "image_size": 16})
    finally:
        registry.remove(entry)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "model.pt", weights_only=True)  # the file really says cuda:0
    loaded, meta = load_model(tmp_path / "model.pt")
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    assert all(p.device.type == "cpu" for p in loaded.parameters()) and meta["num_classes"] == 10
    assert torch.equal(predict(loaded.to(resolve_device("auto")), x)[0], predict(model, x)[0])


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.mark.slow
def test_compile_runs_the_body_compiled_with_the_eager_results_and_keys():
    """torch.compile really works on this CPU (Inductor, g++): training forward and backward match the
    eager model's, and the state-dict keys stay those of the eager model (checkpoints unchanged)."""
    torch.manual_seed(0)
    eager = _Tiny()
    compiled = _Tiny()
    compiled.load_state_dict(eager.state_dict())
    Placement(compile=True).compile_model(compiled)
    x = torch.randn(8, 3, 8, 8)
    out_eager, out_compiled = eager(x), compiled(x)
    out_eager.sum().backward()
    out_compiled.sum().backward()
    assert torch.allclose(out_eager, out_compiled, atol=1e-5)
    assert torch.allclose(eager.body[0].weight.grad, compiled.body[0].weight.grad, atol=1e-5)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert compiled.body._compiled_call_impl is not None  # it did go through torch.compile
