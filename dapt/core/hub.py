"""Whether a Hugging Face hub model can be loaded here: a local folder, the local cache, or the hub.

Torch-free (``huggingface_hub`` only), so the pipeline checks a ``stable_diffusion`` generate
run's weights before any notebook starts.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

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
