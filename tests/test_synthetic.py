"""Real + synthetic images: the reader of generate runs (the dapt-synthetic-v1 format), synset sizes,
and distillation with CRD and DiffAugment on the mixed set.

The generate runs here are written by the tests in the contract format (docs: the synthetic-set
format); their pixels are real digits with noise: the format and the plumbing are under test.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dapt.pipeline import config
from dapt.core import records as runs
from dapt.data import imageset as D
from dapt.training.checkpoint import save_model
from dapt.data.synthetic import class_folder, load_synthetic, read_index, sample_synthetic, with_synthetic
from dapt.stages.distill import distill, training_set
from dapt.core.errors import CorruptImageError, DaptError
from dapt.models.nets import create_model


@pytest.fixture(scope="module")
def digits():
    return D.load_dataset("digits", 16, train_subset=100, seed=0, validation=100)


def write_generate_run(folder: Path, per_class: int, *, dataset: str = "digits", classes=None, size: int = 8,
                       rgb: bool = False, status: str = "done", seed: int = 0) -> Path:
    """A finished generate run in the contract format: noisy digits as the 'generated' PNGs."""
    real = D.load_dataset("digits", size)
    classes = classes if classes is not None else real.classes
    rng = np.random.default_rng(seed)
    entries = []
    for label, name in enumerate(classes):
        pool = real.train_x[real.train_y == label]
        for i in range(per_class):
            pixels = pool[i % len(pool)].numpy().astype(np.int16) + rng.integers(-20, 21, (3, size, size))
            pixels = np.clip(pixels, 0, 255).astype(np.uint8)
            file = f"{class_folder(label, name)}/{i:05d}.png"
            (folder / "images" / file).parent.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(pixels.transpose(1, 2, 0), "RGB") if rgb else Image.fromarray(pixels[0], "L")
            image.save(folder / "images" / file)
            entries.append({"file": file, "label": label, "seed": 1000 * label + i, "prompt": None})
    index = {"format": "dapt-synthetic-v1", "dataset": dataset, "classes": list(classes), "generator": "ddpm",
             "image_size": size, "settings": {"steps": 2}, "images": entries}
    (folder / "images" / "index.json").write_text(json.dumps(index))
    (folder / "metrics.json").write_text(json.dumps({"stage": "generate", "status": status, "params": {
        "dataset": dataset}, "classes": list(classes), "n_images": len(entries)}))
    return folder


def test_class_folders_follow_the_contract():
    assert class_folder(0, "T-shirt/top") == "000_T-shirt_top"
    assert class_folder(9, "Ankle boot") == "009_Ankle_boot"
    assert class_folder(12, "a.b-c_d") == "012_a.b-c_d"


@pytest.mark.parametrize("rgb", [False, True])
def test_reader_decodes_every_entry_at_the_working_size_and_caches_it(tmp_path, digits, rgb):
    folder = write_generate_run(tmp_path / "gen", 3, rgb=rgb)
    (folder / "images" / "000_0" / "99999.png").write_bytes(b"a stray file without an entry is ignored")
    synthetic = load_synthetic(folder, "digits", digits.classes, 16)
    index = json.loads((folder / "images" / "index.json").read_text())
    assert synthetic.x.shape == (30, 3, 16, 16) and synthetic.x.dtype == torch.uint8
    assert synthetic.y.tolist() == [e["label"] for e in index["images"]]
    first = np.array(Image.open(folder / "images" / index["images"][4]["file"]))
    first = torch.from_numpy(first).permute(2, 0, 1) if rgb else torch.from_numpy(first)[None]
    assert torch.equal(synthetic.x[4], D.resize_uint8(first[None], 16)[0])
    cached = list((folder / "images").glob("decoded-*-16px.pt"))
    assert len(cached) == 1
    (folder / "images" / index["images"][0]["file"]).unlink()  # served from the cache, not decoded again
    again = load_synthetic(folder, "digits", digits.classes, 16)
    assert torch.equal(again.x, synthetic.x)
    index["images"] = index["images"][1:]  # a rewritten index is another key: decoded afresh
    (folder / "images" / "index.json").write_text(json.dumps(index))
    assert len(load_synthetic(folder, "digits", digits.classes, 16).y) == 29
    assert len(list((folder / "images").glob("decoded-*-16px.pt"))) == 2


def test_reader_refuses_another_dataset_or_classes_or_an_unfinished_run(tmp_path, digits):
    other = write_generate_run(tmp_path / "fashion", 1, dataset="fashion_mnist",
                               classes=[f"c{i}" for i in range(10)])
    with pytest.raises(DaptError, match=r"made images of fashion_mnist with classes \['c0'.* but this run trains "
                                        r"on digits with classes \['0'"):
        read_index(other, "digits", digits.classes)
    with pytest.raises(DaptError, match="not done; finish it first"):
        read_index(write_generate_run(tmp_path / "busy", 1, status="running"), "digits", digits.classes)
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "metrics.json").write_text(json.dumps({"stage": "teacher", "status": "done"}))
    with pytest.raises(DaptError, match="is not a generate run"):
        read_index(tmp_path / "teacher", "digits", digits.classes)


def test_a_corrupt_or_missing_png_is_one_error_naming_the_file_and_the_fix(tmp_path, digits):
    folder = write_generate_run(tmp_path / "gen", 2)
    png = folder / "images" / "003_3" / "00001.png"
    png.write_bytes(png.read_bytes()[:40])  # truncated
    with pytest.raises(CorruptImageError, match=r"synthetic image .*003_3/00001.png is corrupt or unreadable .*"
                                                r"with --force.*or delete that file and its entry in images/index.json"):
        load_synthetic(folder, "digits", digits.classes, 16)
    png.unlink()
    with pytest.raises(DaptError, match=r"003_3/00001.png listed in images/index.json is missing; re-run"):
        load_synthetic(folder, "digits", digits.classes, 16)
    assert not list((folder / "images").glob("decoded-*")), "a failed decode must not leave a cache"


def test_synset_sizes_follow_the_real_class_counts_and_the_seed(tmp_path, digits):
    synthetic = load_synthetic(write_generate_run(tmp_path / "gen", 25), "digits", digits.classes, 16)
    real_y = digits.train_y[:87]  # 87 of a balanced 100: unequal classes
    real_counts = torch.bincount(real_y, minlength=10)
    assert len(set(real_counts.tolist())) > 1, "a test of proportions needs unequal classes"
    for size, factor in (("1x", 1), ("2x", 2)):
        keep = sample_synthetic(synthetic, real_y, size, seed=3, classes=digits.classes)
        assert len(keep) == factor * len(real_y) and len(set(keep.tolist())) == len(keep)
        assert torch.equal(torch.bincount(synthetic.y[keep], minlength=10), factor * real_counts)
        assert torch.equal(keep, sample_synthetic(synthetic, real_y, size, seed=3, classes=digits.classes))
    assert not torch.equal(keep, sample_synthetic(synthetic, real_y, "2x", seed=4, classes=digits.classes))
    small = load_synthetic(write_generate_run(tmp_path / "small", 15), "digits", digits.classes, 16)
    with pytest.raises(DaptError, match=r"has 15 images of class '\d' but synset_size 2x needs \d+ of it .*raise "
                                        r"images_per_class of the generate run to at least 2\d"):
        sample_synthetic(small, real_y, "2x", seed=0, classes=digits.classes)


def test_mixed_set_appends_synthetic_images_after_the_real_ones(tmp_path, digits):
    synthetic = load_synthetic(write_generate_run(tmp_path / "gen", 12), "digits", digits.classes, 16)
    mixed = with_synthetic(digits, synthetic.x[:7], synthetic.y[:7])
    assert mixed.n_synthetic == 7 and len(mixed.train_y) == len(digits.train_y) + 7
    assert torch.equal(mixed.train_x[: len(digits.train_y)], digits.train_x)
    assert torch.equal(mixed.test_x, digits.test_x)


def test_synset_size_without_synthetic_is_a_config_error():
    with pytest.raises(config.ConfigError, match="synset_size 2x needs synthetic images: set synthetic"):
        config.validate(config.DistillConfig, {"synset_size": "2x"}, "f.yaml")
    with pytest.raises(config.ConfigError, match="diffaug: 'X' is not one of: none, S, M"):
        config.validate(config.DistillConfig, {"diffaug": "X"}, "f.yaml")


@pytest.mark.slow  # trains a teacher and a crd student
def test_distill_with_crd_on_real_and_synthetic_images(tmp_path, digits, capsys):
    """CRD's memory banks have one row per real and per synthetic image, the teacher cache covers the
    synthetic images and the DiffAugment views (hit on the same run again, miss on other views)."""
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    torch.manual_seed(0)
    save_model(teacher_dir / "model.pt", create_model("resnet18", 10), {
        "model": "resnet18", "num_classes": 10, "classes": digits.classes, "dataset": "digits", "image_size": 16})
    (teacher_dir / "metrics.json").write_text(json.dumps({"stage": "teacher", "status": "done", "test_acc": 0.1}))
    generated = write_generate_run(tmp_path / "gen", 10)
    real = D.load_dataset("digits", 16, train_subset=50, seed=0, validation=50)

    def run(name: str, **values):
        cfg = config.validate(config.DistillConfig, {
            "dataset": "digits", "image_size": 16, "train_subset": 50, "epochs": 2, "batch_size": 50, "eval_subset": 50,
            "student": "mobilenet_v2", "teacher": str(teacher_dir), "distiller": "crd", "crd_k": 16,
            "precise_bn": None, "synthetic": str(generated), "diffaug": "S", "run_dir": str(tmp_path / name),
            **values})
        record = runs.RunRecord.start(cfg.run_dir, "distill", config.as_dict(cfg))
        distill(cfg, real, record)
        return cfg, record.metrics, torch.load(Path(cfg.run_dir) / "last.pt", weights_only=True)

    cfg, metrics, last = run("first")
    assert (metrics["n_real"], metrics["n_synthetic"], metrics["synset_size"], metrics["diffaug"]) == (50, 50, "1x", "S")
    assert metrics["synthetic_run"].endswith("gen")
    assert {"train_acc_real", "train_acc_synthetic"} <= set(metrics["history"][-1])
    bank = last["modules"]["distiller"]["criterion.memory.bank_student"]
    assert bank.shape[0] == 100, "the CRD memory bank must hold one row per real and synthetic image"
    # every row, synthetic ones included, was a positive at least once: moved to a unit embedding
    torch.testing.assert_close(bank.norm(dim=1), torch.ones(100), atol=1e-4, rtol=0)
    assert len(list((teacher_dir / "cache").glob("features-*.i8"))) == 2  # one per epoch's view
    capsys.readouterr()

    _, again, _ = run("second")
    assert "teacher targets: reusing" in capsys.readouterr().out
    assert again["history"] == metrics["history"]
    run("plain_views", diffaug="none", epochs=1)
    assert len(list((teacher_dir / "cache").glob("features-*.i8"))) == 3, "other views must not reuse the cache"


def test_training_set_is_the_real_set_without_synthetic(digits):
    cfg = config.validate(config.DistillConfig, {"dataset": "digits", "distiller": "none"})
    assert training_set(cfg, digits) is digits


def test_cached_teacher_targets_under_diffaugment_equal_live_ones(tmp_path):
    """The teacher's cached outputs are its outputs on the very pixels the student gets: crop/flip
    then DiffAugment, view by view."""
    from dapt.data.augment import make_views
    from dapt.data.diffaug import make_diffaug_views, view_pixels
    from dapt.training.teacher_cache import TeacherTargets
    from dapt.training.loop import prepare

    torch.manual_seed(0)
    teacher = create_model("resnet18", 10).eval()
    x = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    views, diff = make_views(12, 16, 2, 0, True), make_diffaug_views(12, 16, 2, 0, "M")
    cached = TeacherTargets(teacher, 16, x, views, cache_dir=tmp_path, key_parts=("t",), channels_last=False,
                            diff_views=diff)
    live = TeacherTargets(teacher, 16, x, views, cache_dir=None, key_parts=(), channels_last=False, diff_views=diff)
    index = torch.tensor([7, 0, 3])
    for v in range(2):
        torch.testing.assert_close(cached.get(v, index)[0], live.get(v, index)[0], atol=2e-2, rtol=1e-2)
        with torch.no_grad():
            _, z = teacher.forward_features(prepare(view_pixels(x[index], views[v].select(index), diff[v].select(index)),
                                                    channels_last=False))
        torch.testing.assert_close(live.get(v, index)[0], z, atol=1e-5, rtol=1e-5)
    plain = TeacherTargets(teacher, 16, x, views, cache_dir=tmp_path, key_parts=("t",), channels_last=False)
    assert plain.keys[1] != cached.keys[1] and not torch.allclose(plain.get(1, index)[0], cached.get(1, index)[0])
