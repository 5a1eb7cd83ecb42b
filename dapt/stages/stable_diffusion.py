"""The ``stable_diffusion`` generator: text-to-image with a diffusers ``StableDiffusionPipeline``.

``model`` is a Hugging Face hub id (``CompVis/stable-diffusion-v1-4``, as in Farhat & Chen 2024) or
a local folder saved with ``save_pretrained``; both load through ``from_pretrained``. The prompts
come from the dataset's own class names. Weights that are neither local, nor cached, nor
downloadable are found when the study is checked, before any notebook runs
(``dapt.core.hub.check_weights_reachable``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from dapt.core.errors import DaptError
from dapt.training.device import Placement

def load_pipeline(model: str, place: Placement):
    """The pipeline of ``model`` on ``place.device``, its weights in ``place.dtype`` (``amp`` bf16 or fp16;
    float32 with amp off), DDIM-scheduled, its own progress bar off.

    A local folder saved without a safety checker loads without one (diffusers would otherwise
    refuse); a pipeline that has one keeps it.
    """
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    extra = {}
    folder = Path(model).expanduser()
    if folder.is_dir() and not (folder / "safety_checker").is_dir():
        extra = {"safety_checker": None, "requires_safety_checker": False}
    dtype = place.dtype or torch.float32
    try:
        pipe = StableDiffusionPipeline.from_pretrained(model, dtype=dtype, low_cpu_mem_usage=False, **extra)
    except (OSError, ValueError) as err:
        raise DaptError(f"cannot load the stable_diffusion pipeline {model!r}: {str(err).splitlines()[0]}") from None
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(place.device)


def prompt_for(template: str, class_name: str) -> str:
    return template.format(name=class_name)


@torch.inference_mode()
def sample(pipe, prompts: list[str], seeds: list[int], *, size: int, guidance_scale: float, steps: int,
           negative_prompt: str | None) -> list:
    """One PIL image per prompt, image k from a generator seeded with ``seeds[k]``, resized to ``size`` px."""
    from PIL import Image

    on = pipe.device
    generators = [torch.Generator(on).manual_seed(seed) for seed in seeds]
    out = pipe(prompt=prompts, negative_prompt=[negative_prompt] * len(prompts) if negative_prompt else None,
               guidance_scale=guidance_scale, num_inference_steps=steps, generator=generators, output_type="pil")
    return [image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS) for image in out.images]
