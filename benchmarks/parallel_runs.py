"""Two runs side by side with one thread each, against one run at a time with both threads.

    .venv/bin/python benchmarks/parallel_runs.py          # about 2 minutes on 2 cores

What ``dapt run --executor ray --cpus-per-run 1`` buys on a 2-core machine over the default local
executor (one run after the other, torch on every core): student training steps (AdamW, batches of 64
at 48 px, fashion_paper's setting) per second of wall time, for MobileNetV2 and EfficientNet-Lite0,
(a) in one process with 2 threads, (b) in two processes with 1 thread each at the same time (the sum
of both). Run it on a quiet machine: the ratio, not the absolute speed, is the result.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time


def _train(model_name: str, threads: int, steps: int, start, out) -> None:
    import torch
    import torch.nn.functional as F

    from dapt.models.nets import create_model
    from dapt.training.loop import prepare

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(model_name, 10).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    x = torch.randint(0, 256, (64, 3, 48, 48), dtype=torch.uint8)
    y = torch.randint(0, 10, (64,))

    def step() -> None:
        loss = F.cross_entropy(model(prepare(x, channels_last=True)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up: allocation and kernel selection
        step()
    start.wait()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    out.put(steps / (time.perf_counter() - began))


def steps_per_second(model_name: str, processes: int, threads: int, steps: int) -> float:
    """Training steps per second of wall time, summed over ``processes`` running at once."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(processes), ctx.Queue()
    workers = [ctx.Process(target=_train, args=(model_name, threads, steps, start, out)) for _ in range(processes)]
    for w in workers:
        w.start()
    rates = [out.get() for _ in workers]
    for w in workers:
        w.join()
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="timed training steps per process")
    args = parser.parse_args()
    print("| student | one run, 2 threads (steps/s) | two runs, 1 thread each (steps/s, summed) | ratio |")
    print("|---|---|---|---|")
    for model_name in ("mobilenet_v2", "efficientnet_lite0"):
        one = steps_per_second(model_name, processes=1, threads=2, steps=args.steps)
        two = steps_per_second(model_name, processes=2, threads=1, steps=args.steps)
        print(f"| {model_name} | {one:.2f} | {two:.2f} | {two / one:.2f}x |")


if __name__ == "__main__":
    main()
