"""`dataset: folder`: a user's own images in torchvision's ImageFolder layout, PATH/{train,test}/<class>/<image>
(optional val/), read into the image cache like every folder dataset; bad layouts refused in one line by a
dry run, before anything is written; and a teacher and a kd student trained on one through papermill."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dapt.cli import main
from dapt.core.errors import CorruptImageError
from dapt.data import formats
from dapt.data.imageset import VALIDATION_FOLDER, load_dataset
from projects import new_project, working_in

CLASSES = ("cat", "dog", "red_fox")  # sorted; red_fox's prompt name is "red fox"


def image_folder(root: Path, train: int = 12, test: int = 6, val: int = 0) -> Path:
    """``root`` holding ``train/``, ``test/`` (and with ``val`` images per class ``val/``) with a folder per class
    of CLASSES: noisy images tinted by class, of mixed sizes, every third one grey, the first of each class a
    PNG and the rest JPEGs."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test), ("val", val)):
        for label, name in enumerate(CLASSES):
            for i in range(n):
                height, width = 12 + 5 * (i % 4), 14 + 3 * (i % 5)
                pixels = rng.integers(0, 90, (height, width, 3))
                pixels[..., label] += 160
                image = Image.fromarray(pixels.astype(np.uint8), "RGB")
                image = image.convert("L") if i % 3 == 0 else image
                path = root / split / name / (f"{i:03d}.png" if i == 0 else f"{i:03d}.jpg")
                path.parent.mkdir(parents=True, exist_ok=True)
                image.save(path)
    return root


def test_the_layout_gives_sorted_classes_cleaned_names_and_uint8_images_at_the_run_size(tmp_path):
    folder = image_folder(tmp_path / "pets")
    index = formats.image_folder_index(folder)
    assert index.classes == list(CLASSES) and index.val is None
    assert index.train[0] == ("train/cat/000.png", 0) and index.test[-1] == ("test/red_fox/005.jpg", 2)
    ds = load_dataset("folder", 16, folder=folder, cache_dir=tmp_path / "cache")
    assert ds.classes == ["cat", "dog", "red fox"]  # underscores → spaces, as the other datasets' names
    assert ds.train_x.shape == (36, 3, 16, 16) and ds.test_x.shape == (18, 3, 16, 16)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.tolist() == [0] * 12 + [1] * 12 + [2] * 12
    grey = ds.train_x[0]  # cat/000.png was saved grey: three equal channels
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert ds.train_x[1:12, 0].float().mean() > ds.train_x[1:12, 1].float().mean() + 50  # cats are red


def test_the_cache_is_keyed_by_the_folders_content_so_an_edited_folder_is_read_again(tmp_path):
    folder, cache = image_folder(tmp_path / "pets"), tmp_path / "cache"
    first = load_dataset("folder", 16, folder=folder, cache_dir=cache)
    assert len(list(cache.glob("folder-16px-*.pt"))) == 1
    assert torch.equal(load_dataset("folder", 16, folder=folder, cache_dir=cache).train_x, first.train_x)
    Image.new("RGB", (20, 20), (0, 0, 255)).save(folder / "train/cat/001.jpg")  # same name, new content
    edited = load_dataset("folder", 16, folder=folder, cache_dir=cache)
    assert len(list(cache.glob("folder-16px-*.pt"))) == 2
    assert edited.train_x[1, 2].float().mean() > 200 and not torch.equal(edited.train_x, first.train_x)


def test_an_edited_folder_trains_a_new_ddpm_while_official_datasets_keep_their_models(tmp_path):
    from dapt.pipeline.config import GenerateConfig
    from dapt.stages.ddpm import settings_of

    folder, cache = image_folder(tmp_path / "pets", train=2, test=1), tmp_path / "cache"
    cfg = GenerateConfig(dataset="folder", folder=str(folder), image_size=16)
    before = settings_of(cfg, load_dataset("folder", 16, folder=folder, cache_dir=cache)).as_dict()
    Image.new("RGB", (20, 20), (0, 0, 255)).save(folder / "train/dog/001.jpg")
    after = settings_of(cfg, load_dataset("folder", 16, folder=folder, cache_dir=cache)).as_dict()
    assert before["images"] and before != after
    digits = GenerateConfig(dataset="digits", image_size=16)
    assert "images" not in settings_of(digits, load_dataset("digits", 16)).as_dict()  # as recorded before folders


def test_a_val_folder_is_the_validation_set_instead_of_the_drawn_one(tmp_path):
    folder = image_folder(tmp_path / "pets", val=2)
    ds = load_dataset("folder", 16, folder=folder, cache_dir=tmp_path / "cache", validation="auto")
    assert ds.val_source == VALIDATION_FOLDER and ds.val_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert len(ds.train_y) == 36 and ds.val_index is None  # every training image trains
    without = load_dataset("folder", 16, folder=image_folder(tmp_path / "plain"), cache_dir=tmp_path / "cache",
                           validation="auto")
    assert without.val_source != VALIDATION_FOLDER and len(without.val_y) + len(without.train_y) == 36


def test_class_names_make_the_prompts_and_the_generated_class_folders(tmp_path):
    from dapt.data.synthetic import class_folder
    from dapt.stages.stable_diffusion import prompt_for

    ds = load_dataset("folder", 16, folder=image_folder(tmp_path / "pets", train=2, test=1),
                      cache_dir=tmp_path / "cache")
    assert [prompt_for("a photo of a {name}", name) for name in ds.classes] == [
        "a photo of a cat", "a photo of a dog", "a photo of a red fox"]
    assert [class_folder(label, name) for label, name in enumerate(ds.classes)] == ["000_cat", "001_dog", "002_red_fox"]


def test_a_truncated_image_is_named_by_its_path_under_the_folder(tmp_path):
    folder = image_folder(tmp_path / "pets", train=3, test=1)
    torn = folder / "train/dog/001.jpg"
    torn.write_bytes(torn.read_bytes()[:60])
    with pytest.raises(CorruptImageError) as exc:
        load_dataset("folder", 16, folder=folder, cache_dir=tmp_path / "cache")
    message = str(exc.value)
    assert "\n" not in message and f"cannot decode image {folder}/train/dog/001.jpg" in message


def test_non_image_files_are_skipped_with_one_warning_line_that_counts_them(tmp_path, capsys):
    folder = image_folder(tmp_path / "pets", train=2, test=1)
    (folder / "train/cat/notes.txt").write_text("a cat")
    (folder / "test/README").write_text("my pets")
    (folder / "train/dog/.DS_Store").write_bytes(b"\0")  # the system's, passed over without a word
    ds = load_dataset("folder", 16, folder=folder, cache_dir=tmp_path / "cache")
    assert len(ds.train_y) == 6 and len(ds.test_y) == 3
    err = capsys.readouterr().err
    assert err == (f"warning: folder {folder}: skipped 2 file(s) that are not JPEG or PNG images in a class folder "
                   f"(e.g. train/cat/notes.txt)\n")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder (params/) with a good image folder in data/pets."""
    (tmp_path / "params").mkdir()
    image_folder(tmp_path / "data/pets", train=2, test=1)
    monkeypatch.setenv("DAPT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(project: Path, capsys, runs: str) -> str:
    """`dapt run --dry-run` on a study of ``runs``: exit 2, one line, nothing written under runs/; that line."""
    before = sorted((project / "runs").rglob("*"))
    (project / "params/bad.yaml").write_text(f"study: bad\ndefaults: {{image_size: 16, epochs: 1}}\nruns:\n{runs}")
    assert main(["run", "params/bad.yaml", "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("dapt: error: ") and captured.err.count("\n") == 1, captured.err
    assert captured.out == "" and sorted((project / "runs").rglob("*")) == before
    return captured.err.removeprefix("dapt: error: params/bad.yaml: ").rstrip("\n")


TEACHER = "  - {stage: teacher, name: t, model: resnet18, init: fr, dataset: folder, folder: data/pets}\n"


def remove(path: Path) -> None:
    for child in sorted(path.rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    path.rmdir()


# (case, what is done to data/pets, the run, the one line without its "dapt: error: params/bad.yaml: ")
BAD = [
    ("no folder key", None, TEACHER.replace(", folder: data/pets", ""),
     "run 't': dataset folder needs folder: PATH, the folder holding " + formats.FOLDER_LAYOUT),
    ("folder with another dataset", None, TEACHER.replace("dataset: folder", "dataset: digits"),
     "run 't': folder 'data/pets' is read by dataset folder only, and this run uses digits; remove folder, or set "
     "dataset: folder"),
    ("no such folder", None, TEACHER.replace("data/pets", "data/cats"),
     "run 't': folder {root}/data/cats not found; set folder: to a folder holding " + formats.FOLDER_LAYOUT),
    ("no train/", lambda pets: remove(pets / "train"), TEACHER,
     "run 't': folder {root}/data/pets has no train/ folder; it must hold " + formats.FOLDER_LAYOUT),
    ("no test/", lambda pets: remove(pets / "test"), TEACHER,
     "run 't': folder {root}/data/pets has no test/ folder; it must hold " + formats.FOLDER_LAYOUT),
    ("a class only in train/", lambda pets: remove(pets / "test/dog"), TEACHER,
     "run 't': folder {root}/data/pets: class 'dog' is in train/ but not in test/; every split needs the same "
     "class folders"),
    ("a class only in val/", lambda pets: image_folder(pets, train=0, test=0, val=1) and remove(pets / "val/cat"),
     TEACHER, "run 't': folder {root}/data/pets: class 'cat' is in train/ but not in val/; every split needs the "
              "same class folders"),
    ("an empty class", lambda pets: [p.unlink() for p in (pets / "test/cat").iterdir()], TEACHER,
     "run 't': folder {root}/data/pets: class 'cat' has no JPEG or PNG image in test/; add images or remove the "
     "class folder from every split"),
    ("one class", lambda pets: [remove(pets / s / c) for s in ("train", "test") for c in ("dog", "red_fox")],
     TEACHER, "run 't': folder {root}/data/pets: train/ holds 1 class folder(s), a classifier needs at least 2; it "
              "must hold " + formats.FOLDER_LAYOUT),
]


@pytest.mark.parametrize("case, damage, runs, message", BAD, ids=[case for case, *_ in BAD])
def test_a_bad_folder_is_refused_by_a_dry_run_in_one_line_writing_nothing(project, capsys, case, damage, runs,
                                                                        message):
    if damage:
        damage(project / "data/pets")
    assert refused(project, capsys, runs) == message.format(root=project)


def test_a_student_on_another_folder_than_its_teacher_is_refused(project, capsys):
    image_folder(project / "data/other", train=2, test=1)
    student = "  - {stage: distill, name: s, student: resnet18, teacher: t, dataset: folder, folder: data/other}\n"
    assert refused(project, capsys, TEACHER + student) == (
        "run 's' uses folder data/other, but its teacher 't' is trained on folder data/pets; set the same dataset on "
        "both runs, or name a teacher run of folder data/other")
    same = student.replace("data/other", f"{project}/data/pets")  # the same folder, spelled absolute
    (project / "params/good.yaml").write_text(f"study: good\ndefaults: {{image_size: 16, epochs: 1}}\nruns:\n"
                                              f"{TEACHER}{same}")
    assert main(["run", "params/good.yaml", "--dry-run"]) == 0


def test_a_teacher_run_folder_trained_on_another_folder_is_refused(project, capsys):
    teacher = project / "runs/other/t"
    teacher.mkdir(parents=True)
    teacher.joinpath("metrics.json").write_text(json.dumps(
        {"status": "done", "stage": "teacher", "params": {"dataset": "folder", "folder": "data/other"}}))
    student = ("  - {stage: distill, name: s, student: resnet18, teacher: runs/other/t, dataset: folder, "
               "folder: data/pets}\n")
    assert refused(project, capsys, student) == (
        "run 's': teacher 'runs/other/t' was trained on folder data/other, this run uses folder data/pets; name a "
        "teacher run of folder data/pets")


FOLDER_STUDY = """
study: mine
defaults: {dataset: folder, folder: data/pets, image_size: 16, train_subset: null, epochs: 1, batch_size: 12,
           precise_bn: null}
runs:
  - {stage: teacher, name: teacher, model: resnet18, init: fr, optimizer: sgd, lr: 0.05}
  - {stage: distill, name: kd, student: resnet18, teacher: teacher, distiller: kd}
"""


@pytest.mark.slow  # executes two notebooks in fresh kernels
def test_a_teacher_and_a_kd_student_train_on_a_folder_through_papermill(tmp_path):
    root = new_project(tmp_path / "project", {"mine": FOLDER_STUDY})
    image_folder(root / "data/pets", val=2)
    for _ in working_in(root):
        assert main(["run", "params/mine.yaml", "--quiet"]) == 0
    for run in ("teacher", "kd"):
        metrics = json.loads((root / "runs/mine" / run / "metrics.json").read_text())
        assert metrics["status"] == "done" and metrics["params"]["folder"] == "data/pets"
        assert metrics["val_source"] == VALIDATION_FOLDER and metrics["val_images"] == 6
        assert metrics["test_images"] == 18 and 0 <= metrics["test_acc"] <= 1
    assert json.loads((root / "runs/mine/kd/metrics.json").read_text())["teacher_run"] == "runs/mine/teacher"
    assert list((root / "data/cache").glob("folder-16px-*.pt"))  # decoded once, into data_root's cache
