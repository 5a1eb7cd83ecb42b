"""The ``stable_diffusion`` generator: text-to-image with a diffusers ``StableDiffusionPipeline``.

``model`` is a Hugging Face hub id (``CompVis/stable-diffusion-v1-4``, as in Farhat & Chen 2024) or
a local folder saved with ``save_pretrained``; both load through ``from_pretrained``. The prompts
come from the dataset's own class names. Weights that are neither local, nor cached, nor
downloadable are found when the study is checked, before any notebook runs.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from dapt.training.device import Placement
from dapt.core.errors import DaptError

_TRUE = ("1", "on", "yes", "true")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE is set or a TCP connection to the hub's endpoint fails within ``timeout``."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def check_weights_reachable(model: str) -> None:
    """Raise one ``DaptError`` naming the fix unless ``model`` is a local pipeline folder, a hub id in the
    local Hugging Face cache, or a hub id while the hub is reachable."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "model_index.json").is_file():
            raise DaptError(f"model {model!r} is a folder without model_index.json, not a diffusers pipeline; point "
                            f"model at the folder a pipeline was saved to (save_pretrained / huggingface-cli download)")
        return
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        # the cache folder read now, not at import time, so HF_HUB_CACHE set by the caller counts
        cached = try_to_load_from_cache(model, "model_index.json", cache_dir=os.environ.get("HF_HUB_CACHE"))
    except HFValidationError:
        raise DaptError(f"model {model!r} is neither a local folder nor a Hugging Face hub id (owner/name); point "
                        f"it at a folder holding model_index.json, or use generator ddpm") from None
    if isinstance(cached, str) or _hub_reachable():
        return
    raise DaptError(f"stable_diffusion model {model!r} is not in the local Hugging Face cache and the hub cannot be "
                    f"reached; download it where there is internet (`huggingface-cli download {model}`, then copy "
                    f"~/.cache/huggingface or the folder here), point model at a local pipeline folder, or use "
                    f"generator ddpm (trained here, offline)")


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
