"""The generate stage: the contract's files, the ddpm (trained a few steps, reused, continued), and a
tiny Stable Diffusion pipeline saved to a folder and loaded back through ``from_pretrained``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from dapt.analysis.summary import Summary
from dapt.pipeline import config
from dapt.stages import ddpm, generate
from dapt.training import loop as train
from dapt.core.records import RunRecord

REPO = Path(__file__).resolve().parents[1]
TINY_DDPM = dict(dataset="digits", image_size=16, train_subset=200, images_per_class=3, batch_size=16, ddpm_steps=4,
                 ddpm_batch_size=8, ddpm_channels=8, ddpm_sample_steps=2)


def run(folder: Path, **values) -> tuple[generate.Generated, dict]:
    """Execute the generate stage as the notebook does; returns its result and metrics.json."""
    cfg = config.validate(config.GenerateConfig, {**values, "run_dir": str(folder)})
    record = RunRecord.start(cfg.run_dir, "generate", config.as_dict(cfg))
    result = generate.generate(cfg, train.load_data(cfg), record)
    record.finish()
    return result, json.loads((folder / "metrics.json").read_text())


def index_of(folder: Path) -> dict:
    return json.loads((folder / "images" / "index.json").read_text())


def test_class_folder_and_seeds_follow_the_contract():
    assert generate.class_folder(0, "T-shirt/top") == "000_T-shirt_top"
    assert generate.class_folder(9, "Ankle boot") == "009_Ankle_boot"
    seeds = {generate.image_seed(0, label, i) for label in range(10) for i in range(100)}
    assert len(seeds) == 1000 and all(0 <= s < 2**32 for s in seeds)
    assert generate.image_seed(0, 3, 7) == generate.image_seed(0, 3, 7) != generate.image_seed(1, 3, 7)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gen") / "run"
    result, metrics = run(folder, **TINY_DDPM)
    return folder, result, metrics


def test_ddpm_writes_the_set_and_its_index(first):
    folder, result, metrics = first
    index = index_of(folder)
    assert index["format"] == "dapt-synthetic-v1" and index["dataset"] == "digits" and index["generator"] == "ddpm"
    assert index["classes"] == [str(d) for d in range(10)] and index["image_size"] == 16
    assert index["settings"]["train_steps"] == 4 and index["settings"]["guidance"] == 3.0
    assert len(index["images"]) == 30 == metrics["n_images"] and result.added == 30
    for entry in index["images"]:
        label, i = entry["label"], int(Path(entry["file"]).stem)
        assert entry["file"] == f"{label:03d}_{label}/{i:05d}.png" and entry["prompt"] is None
        assert entry["seed"] == generate.image_seed(0, label, i)
        with Image.open(folder / "images" / entry["file"]) as image:
            assert image.mode == "L" and image.size == (16, 16)
    assert result.images.shape == (30, 3, 16, 16) and result.images.dtype == torch.uint8
    assert result.labels.tolist() == [e["label"] for e in index["images"]]
    assert not list(folder.rglob("*.tmp")), "a temp file was left behind"
    training = json.loads((folder / "ddpm" / "training.json").read_text())
    assert len(training["losses"]) == 1 and training["losses"][0] > 0  # 4 steps: one window of the curve
    assert metrics["ddpm"]["reused"] is False


def test_a_generate_run_records_the_device_and_precision_it_computed_in(first):
    from dapt.core import provenance

    _, _, metrics = first
    record = metrics["provenance"]
    assert (record["device"], record["device_name"]) == ("cpu", provenance.cpu_model())
    assert record["precision"] == {"generator": "float32"}  # the ddpm trained with amp off; no teacher judged it
    assert record["commit"] == provenance.code_version()[0]


def test_an_image_depends_on_its_seed_not_its_batch(first):
    folder, result, _ = first
    entries = index_of(folder)["images"]
    k = 13  # class 4, image 1, generated in a batch of 16 with other classes
    alone = ddpm.sample(result.model, [entries[k]["label"]], [entries[k]["seed"]], steps=2, guidance=3.0,
                        num_classes=10)
    assert (alone[0, 0].int() - result.images[k, 0].int()).abs().max() <= 1  # batch size may move the last bit
    again = ddpm.sample(result.model, [4, 4], [5, 6], steps=2, guidance=3.0, num_classes=10)
    assert torch.equal(again, ddpm.sample(result.model, [4, 4], [5, 6], steps=2, guidance=3.0, num_classes=10))
    assert not torch.equal(again[0], again[1])


def test_rerun_keeps_images_reuses_the_ddpm_and_adds_only_the_missing(first, tmp_path):
    folder, _, _ = first
    kept = {p: p.read_bytes() for p in (folder / "images").rglob("*.png")}
    stray = folder / "images" / "002_2" / "00004.png"
    stray.write_bytes(b"half a png")  # an earlier run stopped before indexing it: overwritten, not trusted
    result, metrics = run(folder, **{**TINY_DDPM, "images_per_class": 5})
    assert result.added == 20 and metrics["n_images"] == 50 and metrics["ddpm"]["reused"] is True
    assert all(p.read_bytes() == data for p, data in kept.items()), "an existing image was regenerated"
    entries = index_of(folder)["images"]
    assert [e["file"] for e in entries if e["label"] == 2] == [f"002_2/{i:05d}.png" for i in range(5)]
    with Image.open(stray) as image:
        assert image.size == (16, 16)
    # other sampling settings: the old set is replaced, the trained model still reused
    result, metrics = run(folder, **{**TINY_DDPM, "ddpm_guidance": 1.0})
    assert result.added == 30 and metrics["ddpm"]["reused"] is True and len(index_of(folder)["images"]) == 30
    assert index_of(folder)["settings"]["guidance"] == 1.0
    # other training settings: trained anew
    _, metrics = run(folder, **{**TINY_DDPM, "ddpm_steps": 3})
    assert metrics["ddpm"]["reused"] is False and metrics["ddpm"]["steps"] == 3


def test_nearest_real_finds_an_exact_copy():
    real = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    generated = torch.stack([real[7], real[3].clone().add_(1)])  # a copy, and a copy one grey level up
    index, rms = generate.nearest_real(generated, real)
    assert index.tolist() == [7, 3]
    assert rms[0].item() == 0.0 and rms[1].item() == pytest.approx(1 / 255, rel=1e-4)


# --- stable_diffusion -----------------------------------------------------------------------------

def clip_tokenizer_folder(folder: Path) -> Path:
    """CLIP's real BPE vocabulary, from the open_clip wheel, as the vocab.json + merges.txt of a hub
    tokenizer folder: byte tokens, their end-of-word forms, one token per merge, then the two specials."""
    from open_clip.tokenizer import SimpleTokenizer

    clip = SimpleTokenizer()
    specials = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}  # the names HF's CLIP uses
    vocab = {specials.get(token, token): i for token, i in clip.encoder.items()}
    merges = [" ".join(pair) for pair, _ in sorted(clip.bpe_ranks.items(), key=lambda item: item[1])]
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> Path:
    """A Stable Diffusion pipeline of tiny random modules, saved like a downloaded one."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("sd")
    tokenizer = CLIPTokenizer.from_pretrained(clip_tokenizer_folder(root / "clip_bpe"), model_max_length=77)
    assert tokenizer("a photo of a T-shirt/top").input_ids == [49406, 320, 1125, 539, 320, 339, 268, 2523, 270, 1253,
                                                               49407]  # open_clip's encoding, between the specials
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=2, attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
        max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "pipeline")
    return root / "pipeline"


def test_stable_diffusion_from_a_local_folder(tiny_pipeline, tmp_path):
    settings = dict(dataset="digits", image_size=12, generator="stable_diffusion", model=str(tiny_pipeline),
                    images_per_class=2, batch_size=8, num_inference_steps=2, negative_prompt="blurry")
    result, metrics = run(tmp_path / "a", **settings)
    index = index_of(tmp_path / "a")
    assert metrics["n_images"] == 20 and index["generator"] == "stable_diffusion"
    assert index["settings"]["model"] == str(tiny_pipeline) and index["settings"]["guidance_scale"] == 7.5
    entry = index["images"][7]
    assert entry == {"file": "003_3/00001.png", "label": 3, "seed": generate.image_seed(0, 3, 1),
                     "prompt": "a photo of a 3"}
    with Image.open(tmp_path / "a" / "images" / entry["file"]) as image:
        assert image.mode == "RGB" and image.size == (12, 12)
    assert result.images.float().std() > 0  # not a blank set
    # the same seeds in other batches give the same images
    again, _ = run(tmp_path / "b", **{**settings, "batch_size": 3})
    assert (again.images.int() - result.images.int()).abs().max() <= 1


def test_stable_diffusion_with_a_hub_style_tokenizer_folder(tiny_pipeline, tmp_path):
    """Hub pipelines (CompVis/stable-diffusion-v1-4) ship their tokenizer as vocab.json + merges.txt, while
    transformers 5 saves tokenizer.json: both must load."""
    import shutil

    folder = tmp_path / "hub_style"
    shutil.copytree(tiny_pipeline, folder)
    shutil.rmtree(folder / "tokenizer")
    shutil.copytree(tiny_pipeline.parent / "clip_bpe", folder / "tokenizer")
    (folder / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(
        {"model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}))
    result, metrics = run(tmp_path / "run", dataset="digits", image_size=8, generator="stable_diffusion",
                          model=str(folder), images_per_class=1, num_inference_steps=1)
    assert metrics["n_images"] == 10 and result.images.shape == (10, 3, 8, 8)


# --- the notebook, executed ---------------------------------------------------------------------

# the teacher: the session's (conftest.SHARED_TEACHER), a teacher of another study
STUDY = """
study: gen
defaults: {dataset: digits, image_size: 16, train_subset: 300}
runs:
  - {stage: generate, name: ddpm, teacher: runs/shared/teacher, images_per_class: 4, ddpm_steps: 6, ddpm_batch_size: 16,
     ddpm_channels: 8, ddpm_sample_steps: 2}
  # 30 real images (3 per class) + 1x synthetic, CRD over one index space, DiffAugment on both
  - {stage: distill, name: crd_synthetic, student: mobilenet_v2, teacher: runs/shared/teacher, distiller: crd, crd_k: 16,
     train_subset: 30, batch_size: 20, epochs: 2, synthetic: ddpm, synset_size: 1x, diffaug: S}
  - {stage: report, name: report}
"""


def shown_images(notebook: Path) -> int:
    cells = json.loads(notebook.read_text())["cells"]
    return sum("image/png" in out.get("data", {}) for cell in cells for out in cell.get("outputs", []))


@pytest.mark.slow
def test_generate_then_distill_on_real_and_synthetic_then_report(tmp_path, monkeypatch, shared_teacher_into):
    """The whole synthetic path as a user runs it: a study names its generate run in a distill run."""
    import shutil

    from dapt.cli import main

    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "gen.yaml").write_text(STUDY)
    shared_teacher_into(tmp_path)
    monkeypatch.setenv("DAPT_ROOT", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "params/gen.yaml", "--quiet"]) == 0
    folder = tmp_path / "runs" / "gen" / "ddpm"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["stage"] == "generate" and metrics["params"]["dataset"] == "digits"
    assert metrics["n_images"] == 40 and metrics["classes"] == [str(d) for d in range(10)]
    assert 0 <= metrics["teacher_acc_on_synthetic"] <= 1 and len(metrics["teacher_per_class_acc_on_synthetic"]) == 10
    assert metrics["teacher_run"] == "runs/shared/teacher"
    # loss curve, samples, nearest real, per-class accuracy, confusion
    assert shown_images(folder / "notebook.ipynb") == 5
    assert {p.name for p in (folder / "figures").iterdir()} == {
        "ddpm_loss.png", "samples.png", "nearest_real.png", "teacher_per_class.png", "teacher_confusion.png"}

    student = json.loads((tmp_path / "runs/gen/crd_synthetic/metrics.json").read_text())
    assert student["status"] == "done" and student["n_real"] == 30 and student["n_synthetic"] == 30
    assert student["synthetic_run"] == "runs/gen/ddpm" and student["diffaug"] == "S"
    assert {"train_acc_real", "train_acc_synthetic"} <= set(student["history"][-1])
    summary = Summary.read(tmp_path / "runs/gen", exclude=("report",))
    assert [(g["run"], g["generator"], g["n_images"]) for g in summary.generated] == [("ddpm", "ddpm", 40)]
    report = (tmp_path / "runs/gen/report/notebook.ipynb").read_text()
    assert "30 real + 30 synthetic (ddpm, 1x, DiffAugment S)" in report
