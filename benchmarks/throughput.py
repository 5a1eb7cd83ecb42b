"""Speed ratios of dapt's performance choices, measured in one run on this machine.

    .venv/bin/python benchmarks/throughput.py            # about 30 seconds on 2 cores

1. channels_last vs contiguous: MobileNetV2 training steps at 32 px.
2. cached vs live teacher targets: one distillation step of a MobileNetV2 student with an
   EfficientNet-Lite2 teacher that sees the student's view at 48 px.
3. reading a batch of teacher targets from the memory-mapped cache file (warm: in the page cache) vs
   from an in-memory fp16 table, at fashion_quick's size (4 views x 6,000 images x (10 + 1280)), and
   the memory-mapped read against a MobileNetV2 training step on the same batch.
4. batched tensor augmentation of 6,000 images vs one image at a time.
5. amp bf16 vs off: MobileNetV2 training steps at 32 px through dapt's Placement (autocast to bfloat16).
6. inference batches: an EfficientNet-Lite2 teacher over 1,000 images at 64 px (a teacher-cache build, a
   final evaluation) in batches of ``loop.inference_batch`` (64 on the CPU) vs the former 500.
Ratios, not absolute times, are the result: absolute times move with the machine's load.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dapt.data.augment import apply_augment, augment, make_views
from dapt.training.device import Placement
from dapt.distillers import DistillerSettings
from dapt.distillers.base import build_distiller
from dapt.models.nets import create_model
from dapt.training.teacher_cache import TeacherTargets
from dapt.training.loop import inference_batch, predict, prepare


def per_second(fn, repeats: int) -> float:
    fn()  # warm-up: first calls pay for allocation and kernel selection
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return repeats / (time.perf_counter() - start)


def training_steps(channels_last: bool, batch: int, repeats: int, amp: str = "off") -> float:
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", 10)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (batch,))
    place = Placement(amp=amp)

    def step() -> None:
        with place.autocast():
            loss = F.cross_entropy(model(prepare(place.to_device(x), channels_last=channels_last)).float(), y)
        optimizer.zero_grad()
        place.backward(loss)
        place.step(optimizer)

    return per_second(step, repeats) * batch


def distill_steps(cached: bool, batch: int, repeats: int) -> float:
    torch.manual_seed(0)
    n = batch * 4
    train_x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    train_y = torch.randint(0, 10, (n,))
    teacher = create_model("efficientnet_lite2", 10).eval().to(memory_format=torch.channels_last)
    student = create_model("mobilenet_v2", 10).to(memory_format=torch.channels_last)
    distiller = build_distiller("kd", DistillerSettings(), s_dim=student.feat_dim, t_dim=teacher.feat_dim,
                                num_classes=10)
    views = make_views(n, 32, 1, seed=0, augment=True)
    folder = tempfile.TemporaryDirectory()
    targets = TeacherTargets(teacher, 48, train_x, views, cache_dir=Path(folder.name) if cached else None,
                             key_parts=(), channels_last=True)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    index = torch.arange(batch)

    def step() -> None:
        x = apply_augment(train_x[index], views[0].select(index))
        s_feat, s_logits = student.forward_features(prepare(x))
        t_logits, t_feat = targets.get(0, index)
        loss, _ = distiller(s_feat, s_logits, train_y[index], t_feat=t_feat, t_logits=t_logits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return per_second(step, repeats) * batch


class _WideTeacher(torch.nn.Module):
    """A teacher as wide as EfficientNet-Lite2 (1280 features) that costs nothing to run: the cache
    file's layout and size, not the teacher, decide what a read costs."""

    def __init__(self, features: int = 1280, classes: int = 10):
        super().__init__()
        self.body, self.head = torch.nn.Linear(3, features), torch.nn.Linear(features, classes)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x.mean((2, 3)))
        return f, self.head(f)


def cache_reads(batch: int, repeats: int) -> tuple[float, float]:
    """Batches of targets read per second from the memory-mapped cache and from an in-memory fp16 table."""
    n, views = 6000, 4
    x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8)
    with tempfile.TemporaryDirectory() as folder:
        targets = TeacherTargets(_WideTeacher(), 8, x, make_views(n, 8, views, 0, True), cache_dir=Path(folder),
                                 key_parts=(), channels_last=False)
        table = torch.from_numpy(targets.table[:].copy())  # the former in-memory cache: [K, N, C + D] fp16
        generator = torch.Generator().manual_seed(0)
        order = [torch.randperm(n, generator=generator)[:batch] for _ in range(64)]
        for index in order:  # warm: every page of a view in the page cache, as after one epoch
            targets.get(0, index)
        step = iter(range(10**9))

        def mapped() -> None:
            targets.get(0, order[next(step) % len(order)])

        def in_memory() -> None:
            rows = table[0, order[next(step) % len(order)]].float()
            rows[:, :10].contiguous(), rows[:, 10:].contiguous()

        return per_second(mapped, repeats * 20), per_second(in_memory, repeats * 20)


def augmentation(batched: bool) -> float:
    x = torch.randint(0, 256, (6000, 3, 32, 32), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    if batched:
        return per_second(lambda: augment(x, generator), 3) * len(x)
    few = x[:500]
    return per_second(lambda: [augment(img[None], generator) for img in few], 1) * len(few)


def teacher_inference(batch: int | None) -> float:
    """Images per second of an eval-mode EfficientNet-Lite2 over 1,000 images at 64 px."""
    torch.manual_seed(0)
    teacher = create_model("efficientnet_lite2", 10).to(memory_format=torch.channels_last)
    x = torch.randint(0, 256, (1000, 3, 64, 64), dtype=torch.uint8)
    return per_second(lambda: predict(teacher, x, batch_size=batch, features=True), 1) * len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--repeats", type=int, default=8, help="timed steps per measurement (default 8)")
    args = parser.parse_args()
    rows = [
        ("channels_last / contiguous (MobileNetV2 training)",
         training_steps(True, args.batch, args.repeats), training_steps(False, args.batch, args.repeats)),
        ("cached / live teacher (KD step, Lite2 teacher at 48 px)",
         distill_steps(True, args.batch, args.repeats), distill_steps(False, args.batch, args.repeats)),
        ("batched / per-image augmentation", augmentation(True), augmentation(False)),
        ("amp bf16 / off (MobileNetV2 training, channels_last)",
         training_steps(True, args.batch, args.repeats, "bf16"), training_steps(True, args.batch, args.repeats)),
        (f"inference batch {inference_batch(64, torch.device('cpu'))} / 500 (Lite2 eval, 64 px)",
         teacher_inference(None), teacher_inference(500)),
    ]
    mapped, in_memory = cache_reads(args.batch, args.repeats)
    student = training_steps(True, args.batch, args.repeats) / args.batch  # MobileNetV2 steps per second
    rows.insert(2, ("in-memory / memory-mapped teacher-cache reads", in_memory * args.batch, mapped * args.batch))
    print(f"{'memory-mapped cache read / MobileNetV2 training step (time)':<58} {student / mapped:.4f}")
    for name, fast, slow in rows:
        print(f"{name:<58} {fast:>9.0f} vs {slow:>9.0f} img/s  ratio {fast / slow:5.2f}x")


if __name__ == "__main__":
    main()
