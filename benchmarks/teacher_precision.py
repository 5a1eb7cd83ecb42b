"""How fast a teacher's forward pass runs in bf16 against float32 on this machine's CPU, and how far its
outputs move: what ``teacher_amp: auto`` rests on (``dapt.training.device.teacher_dtype``).

    .venv/bin/python benchmarks/teacher_precision.py        # about a minute on 2 quiet cores

Per model and input size: seconds per batch of 256 in float32 and under bf16 autocast (the mean of 3
after a warm-up), their ratio, the largest feature error relative to the largest feature, and the largest
logit error against the largest logit. Random-init weights: the speed is the result, the errors only say
that bf16 keeps about 2-3 significant digits.
"""
from __future__ import annotations

import time

import torch

from dapt.models.nets import create_model

CASES = [("resnet50", 32), ("efficientnet_lite2", 48), ("resnet50", 96)]


def seconds_and_outputs(model, x: torch.Tensor, bf16: bool) -> tuple[float, torch.Tensor, torch.Tensor]:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model.forward_features(x)
        start = time.perf_counter()
        for _ in range(3):
            features, logits = model.forward_features(x)
        return (time.perf_counter() - start) / 3, features.float(), logits.float()


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"AVX512-BF16 {torch.cpu._is_avx512_bf16_supported()}, AMX {torch.cpu._is_amx_tile_supported()}")
    for name, size in CASES:
        model = create_model(name, 10, pretrained=False, image_size=size).eval()
        x = torch.rand(256, 3, size, size)
        t32, f32, z32 = seconds_and_outputs(model, x, bf16=False)
        t16, f16, z16 = seconds_and_outputs(model, x, bf16=True)
        print(f"{name} {size} px: float32 {t32:.3f} s, bf16 {t16:.3f} s, float32/bf16 {t32 / t16:.2f}; "
              f"feature error {float((f32 - f16).abs().max() / f32.abs().max()):.4f} of the largest, "
              f"logit error {float((z32 - z16).abs().max()):.4f} (largest logit {float(z32.abs().max()):.2f})")


if __name__ == "__main__":
    main()
