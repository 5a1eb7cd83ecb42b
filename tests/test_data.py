"""Tests of dapt.data and its on-disk formats, on tiny files written in each dataset's real format."""
from __future__ import annotations

import gzip
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dapt.data import DATASETS, formats, imagecache
from dapt.data.imageset import NORMALISATIONS, Normalise, load_dataset, normalise, stratified_subset, to_float
from dapt.core.errors import CorruptImageError, DaptError, DatasetMissingError
from dapt.core.registry import UnknownNameError

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- idx-ubyte (Fashion-MNIST) ---------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_fashion(folder: Path, compress: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(20) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(10)[::-1] % 10,
    }
    for stem, array in arrays.items():
        write_idx(folder / stem, array, compress)
    return arrays


def test_fashion_mnist_reads_gzipped_idx_from_the_system_folder(tmp_path, monkeypatch):
    arrays = write_fashion(tmp_path / "debian")
    monkeypatch.setenv("DAPT_FASHION_MNIST_DIR", str(tmp_path / "debian"))
    images = load_dataset("fashion_mnist", 28, data_root=tmp_path / "data")
    assert images.train_x.shape == (20, 3, 28, 28) and images.train_x.dtype == torch.uint8
    assert images.test_x.shape == (10, 3, 28, 28) and images.test_y.dtype == torch.int64
    for channel in range(3):  # grey is repeated to three identical channels
        assert np.array_equal(images.train_x[:, channel].numpy(), arrays["train-images-idx3-ubyte"])
    assert images.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert images.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert images.classes[0] == "T-shirt/top" and images.classes[9] == "Ankle boot" and images.num_classes == 10


def test_fashion_mnist_resizes_with_antialiased_bilinear(tmp_path, monkeypatch):
    arrays = write_fashion(tmp_path / "debian")
    monkeypatch.setenv("DAPT_FASHION_MNIST_DIR", str(tmp_path / "debian"))
    for size, antialias in ((32, False), (14, True)):
        images = load_dataset("fashion_mnist", size, data_root=tmp_path)
        grey = torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float()[:, None]
        expected = F.interpolate(grey, size=(size, size), mode="bilinear", antialias=antialias).round().clamp(0, 255)
        assert images.test_x.shape == (10, 3, size, size)
        assert torch.equal(images.test_x[:, 1:2], expected.to(torch.uint8))


def test_fashion_mnist_reads_torchvision_raw_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPT_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    arrays = write_fashion(tmp_path / "data" / "fashion_mnist" / "FashionMNIST" / "raw", compress=False)
    images = load_dataset("fashion_mnist", 28, data_root=tmp_path / "data")
    assert np.array_equal(images.test_x[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])


def test_fashion_mnist_missing_names_both_fixes(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPT_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetMissingError) as exc:
        load_dataset("fashion_mnist", 28, data_root=tmp_path)
    message = one_line(exc)
    assert "apt-get install dataset-fashion-mnist" in message and "download: true" in message


def test_corrupt_idx_header_is_a_clear_error(tmp_path, monkeypatch):
    write_fashion(tmp_path / "debian")
    bad = tmp_path / "debian" / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x12\x34\x56\x78garbage")
    monkeypatch.setenv("DAPT_FASHION_MNIST_DIR", str(tmp_path / "debian"))
    with pytest.raises(CorruptImageError) as exc:
        load_dataset("fashion_mnist", 28, data_root=tmp_path)
    assert str(bad) in one_line(exc)


@pytest.mark.skipif(not formats.FASHION_MNIST_DEBIAN_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_debian_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.delenv("DAPT_FASHION_MNIST_DIR", raising=False)
    images = load_dataset("fashion_mnist", 32, data_root=tmp_path)
    assert images.train_x.shape == (60000, 3, 32, 32) and images.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(images.train_y).tolist() == [6000] * 10


# --- digits (scikit-learn) ---------------------------------------------------------------------

def test_digits_split_and_scaling(tmp_path):
    images = load_dataset("digits", 8, data_root=tmp_path)
    assert images.train_x.shape == (1437, 3, 8, 8) and images.test_x.shape == (360, 3, 8, 8)
    assert int(images.train_x.max()) == 255 and int(images.train_x.min()) == 0  # 16 → 255
    assert images.classes == [str(d) for d in range(10)]
    per_class = torch.bincount(images.train_y) + torch.bincount(images.test_y)
    assert (torch.bincount(images.test_y) - 0.2 * per_class).abs().max() < 1  # stratified 20 %
    again = load_dataset("digits", 8, data_root=tmp_path, seed=5)  # the split ignores the run seed
    assert torch.equal(images.test_x, again.test_x)


# --- CIFAR pickle batches ------------------------------------------------------------------------

def write_pickle(path: Path, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(entry, protocol=2))


def cifar_images(n: int, offset: int) -> np.ndarray:
    """[n, 3, 32, 32] whose R, G, B planes hold distinct values, so a wrong reshape shows."""
    planes = np.arange(3)[None, :, None, None] * 60 + np.arange(n)[:, None, None, None] + offset
    return np.broadcast_to(planes, (n, 3, 32, 32)).astype(np.uint8)


def test_cifar10_pickle_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_pickle(folder / "batches.meta", {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": 2})
    for i in range(1, 6):
        write_pickle(folder / f"data_batch_{i}", {b"data": cifar_images(2, 10 * i).reshape(2, 3072), b"labels": [i, i + 1]})
    write_pickle(folder / "test_batch", {b"data": cifar_images(3, 100).reshape(3, 3072), b"labels": [7, 8, 9]})
    images = load_dataset("cifar10", 32, data_root=tmp_path)
    assert images.classes == names
    assert images.train_x.shape == (10, 3, 32, 32) and images.test_y.tolist() == [7, 8, 9]
    assert images.train_y.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert images.test_x[2, :, 5, 7].tolist() == [102, 162, 222]
    assert images.train_x[0, :, 0, 0].tolist() == [10, 70, 130]


def test_cifar100_pickle_with_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    fine = [f"class_{i}" for i in range(99)] + ["aquarium_fish"]
    write_pickle(folder / "meta", {"fine_label_names": fine, "coarse_label_names": ["x"] * 20})
    write_pickle(folder / "train", {"data": cifar_images(4, 0).reshape(4, 3072), "fine_labels": [0, 99, 5, 6], "coarse_labels": [0] * 4})
    write_pickle(folder / "test", {"data": cifar_images(2, 50).reshape(2, 3072), "fine_labels": [99, 1], "coarse_labels": [0] * 2})
    images = load_dataset("cifar100", 16, data_root=tmp_path)
    assert images.num_classes == 100 and images.classes[99] == "aquarium fish"
    assert images.train_x.shape == (4, 3, 16, 16) and images.train_y.tolist() == [0, 99, 5, 6]
    assert images.test_x[0, :, 3, 3].tolist() == [50, 110, 170]  # constant planes stay constant


def test_cifar_missing_names_folder_and_download(tmp_path):
    with pytest.raises(DatasetMissingError) as exc:
        load_dataset("cifar10", 32, data_root=tmp_path)
    message = one_line(exc)
    assert str(tmp_path / "cifar-10-batches-py") in message and "download: true" in message


# --- folder datasets -----------------------------------------------------------------------------

def write_jpeg(path: Path, colour, size=(20, 14), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, "JPEG", quality=95)


def make_dtd(root: Path) -> Path:
    folder = root / "dtd" / "dtd"
    classes = ["banded", "zigzagged"]
    splits = {"train1": [1, 2], "val1": [3], "test1": [4, 5]}
    for name, numbers in splits.items():
        lines = [f"{c}/{c}_{n:04d}.jpg" for c in classes for n in numbers]
        (folder / "labels").mkdir(parents=True, exist_ok=True)
        (folder / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            write_jpeg(folder / "images" / line, COLOURS[classes.index(line.split("/")[0])])
    return folder


def assert_colours(x: torch.Tensor, y: torch.Tensor, tolerance: int = 6) -> None:
    for image, label in zip(x, y):
        mean = image.float().mean(dim=(1, 2))
        assert torch.allclose(mean, torch.tensor(COLOURS[int(label)], dtype=torch.float), atol=tolerance)


def test_dtd_layout_partition_one(tmp_path):
    make_dtd(tmp_path)
    images = load_dataset("dtd", 12, data_root=tmp_path)
    assert images.classes == ["banded", "zigzagged"]
    assert images.train_x.shape == (6, 3, 12, 12) and images.test_x.shape == (4, 3, 12, 12)
    assert images.train_y.tolist() == [0, 0, 1, 1, 0, 1] and images.test_y.tolist() == [0, 0, 1, 1]
    assert_colours(images.train_x, images.train_y)


def test_folder_cache_is_used_the_second_time(tmp_path):
    folder = make_dtd(tmp_path)
    first = load_dataset("dtd", 12, data_root=tmp_path)
    assert len(list((tmp_path / "cache").glob("dtd-12px-*.pt"))) == 1
    shutil.rmtree(folder / "images")
    second = load_dataset("dtd", 12, data_root=tmp_path)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)
    with pytest.raises(DatasetMissingError) as exc:  # another size needs the images again
        load_dataset("dtd", 10, data_root=tmp_path)
    assert str(folder / "images") in one_line(exc)


def test_corrupt_cache_is_rebuilt(tmp_path):
    make_dtd(tmp_path)
    first = load_dataset("dtd", 12, data_root=tmp_path, cache_dir=tmp_path / "c")
    [cache] = (tmp_path / "c").glob("*.pt")
    cache.write_bytes(b"not a torch file")
    second = load_dataset("dtd", 12, data_root=tmp_path, cache_dir=tmp_path / "c")
    assert torch.equal(first.train_x, second.train_x)
    assert torch.equal(torch.load(cache, weights_only=True)["train_x"], first.train_x)


def test_corrupt_image_names_the_file(tmp_path):
    folder = make_dtd(tmp_path)
    bad = folder / "images" / "banded" / "banded_0003.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(CorruptImageError) as exc:
        load_dataset("dtd", 12, data_root=tmp_path)
    assert str(bad) in one_line(exc)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.pt"))


def test_caltech101_split_excludes_background_and_uses_the_cache(tmp_path):
    folder = tmp_path / "caltech101" / "101_ObjectCategories"
    for label, name in enumerate(["Faces_easy", "accordion"]):
        for i in range(4):
            write_jpeg(folder / name / f"image_{i + 1:04d}.jpg", COLOURS[label], mode="RGB")
    write_jpeg(folder / "BACKGROUND_Google" / "image_0001.jpg", (0, 0, 0))
    images = load_dataset("caltech101", 8, data_root=tmp_path, seed=1)
    assert images.classes == ["Faces easy", "accordion"]
    assert torch.bincount(images.train_y).tolist() == [3, 3] and torch.bincount(images.test_y).tolist() == [1, 1]
    assert_colours(torch.cat([images.train_x, images.test_x]), torch.cat([images.train_y, images.test_y]))
    (folder / "accordion" / "image_0001.jpg").write_bytes(b"garbage")  # same file list: the cache answers
    again = load_dataset("caltech101", 8, data_root=tmp_path, seed=2)
    assert torch.equal(images.test_x, again.test_x)
    with pytest.raises(CorruptImageError) as exc:
        load_dataset("caltech101", 8, data_root=tmp_path, cache_dir=tmp_path / "fresh")
    assert "image_0001.jpg" in one_line(exc)


def test_caltech101_protocol_thirty_train_up_to_fifty_test(tmp_path):
    folder = tmp_path / "caltech101" / "101_ObjectCategories"
    for name, count in (("ant", 90), ("bass", 40)):
        (folder / name).mkdir(parents=True)
        for i in range(count):
            (folder / name / f"image_{i:04d}.jpg").touch()
    index = formats.caltech101_index(tmp_path, download=False)
    assert sum(label == 0 for _, label in index.train) == 30 and sum(label == 0 for _, label in index.test) == 50
    assert sum(label == 1 for _, label in index.train) == 30 and sum(label == 1 for _, label in index.test) == 10
    assert not {p for p, _ in index.train} & {p for p, _ in index.test}
    assert formats.caltech101_index(tmp_path, download=False) == index


def test_mit_indoor_split_files(tmp_path):
    folder = tmp_path / "mit_indoor"
    train = ["kitchen/int474.jpg", "kitchen/int5.jpg", "living_room/a.jpg"]
    test = ["living_room/b.jpg", "kitchen/c.jpg"]
    for line in train + test + ["kitchen/unlisted.jpg"]:
        write_jpeg(folder / "Images" / line, COLOURS[line.startswith("living")], size=(9, 16))
    (folder / "TrainImages.txt").write_text("\r\n".join(train) + "\r\n")  # tolerate Windows line ends
    (folder / "TestImages.txt").write_text("\n".join(test))
    images = load_dataset("mit_indoor", 10, data_root=tmp_path)
    assert images.classes == ["kitchen", "living room"]
    assert images.train_y.tolist() == [0, 0, 1] and images.test_y.tolist() == [1, 0]
    assert_colours(images.test_x, images.test_y)


def test_image_listed_but_missing_names_the_file(tmp_path):
    folder = tmp_path / "mit_indoor"
    write_jpeg(folder / "Images" / "bar" / "a.jpg", COLOURS[0])
    (folder / "TrainImages.txt").write_text("bar/a.jpg\n")
    (folder / "TestImages.txt").write_text("bar/gone.jpg\n")
    with pytest.raises(DatasetMissingError) as exc:
        load_dataset("mit_indoor", 10, data_root=tmp_path)
    assert str(folder / "Images" / "bar" / "gone.jpg") in one_line(exc)


def test_malformed_cub_metadata_is_a_clear_error(tmp_path):
    folder = tmp_path / "CUB_200_2011"
    folder.mkdir()
    for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt"):
        (folder / name).write_text("1 x\n")
    (folder / "images.txt").write_text("1 a.jpg\nbroken\n")
    with pytest.raises(CorruptImageError) as exc:
        load_dataset("cub_2011", 8, data_root=tmp_path)
    assert "images.txt" in one_line(exc)


def test_manual_datasets_say_they_cannot_be_downloaded(tmp_path):
    with pytest.raises(DatasetMissingError) as exc:
        load_dataset("mit_indoor", 10, data_root=tmp_path, download=True)
    assert "cannot be downloaded automatically" in one_line(exc) and "TrainImages.txt" in str(exc.value)


def test_cub_2011_official_files(tmp_path):
    folder = tmp_path / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    rows = [(1, 0, "1"), (2, 0, "0"), (3, 1, "1"), (4, 1, "0"), (5, 1, "1")]
    for image_id, label, _ in rows:
        write_jpeg(folder / "images" / classes[label] / f"bird_{image_id}.jpg", 128 if image_id == 5 else COLOURS[label], mode="L" if image_id == 5 else "RGB")
    (folder / "classes.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    (folder / "images.txt").write_text("".join(f"{i} {classes[l]}/bird_{i}.jpg\n" for i, l, _ in rows))
    (folder / "image_class_labels.txt").write_text("".join(f"{i} {l + 1}\n" for i, l, _ in rows))
    (folder / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, t in rows))
    images = load_dataset("cub_2011", 8, data_root=tmp_path)
    assert images.classes == ["Black footed Albatross", "Laysan Albatross"]
    assert images.train_y.tolist() == [0, 1, 1] and images.test_y.tolist() == [0, 1]
    grey = images.train_x[2]  # a grey JPEG becomes three equal channels
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_decode_resizes_shorter_side_then_centre_crops(tmp_path):
    strip = np.zeros((10, 30, 3), dtype=np.uint8)
    strip[:, :10] = (255, 0, 0)
    strip[:, 10:20] = (0, 255, 0)
    strip[:, 20:] = (0, 0, 255)
    Image.fromarray(strip).save(tmp_path / "strip.png")
    out = imagecache.decode_image(tmp_path / "strip.png", 8)  # 30x10 → 24x8, keep columns 8..16: the green third
    assert out.shape == (3, 8, 8)
    assert (out[1, :, 1:7] == 255).all() and (out[0, :, 1:7] == 0).all() and (out[2, :, 1:7] == 0).all()


def test_clean_class_name():
    assert formats.clean_class_name("001.Black_footed_Albatross") == "Black footed Albatross"
    assert formats.clean_class_name("T-shirt/top") == "T-shirt/top"


# --- subsets ------------------------------------------------------------------------------------

def test_stratified_subset_proportions_and_determinism():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)[torch.randperm(100, generator=torch.Generator().manual_seed(3))]
    chosen = stratified_subset(labels, 10, seed=0)
    assert torch.bincount(labels[chosen]).tolist() == [5, 3, 2]
    assert chosen.tolist() == sorted(set(chosen.tolist()))
    assert torch.equal(chosen, stratified_subset(labels, 10, seed=0))
    assert not torch.equal(chosen, stratified_subset(labels, 10, seed=1))
    assert torch.equal(stratified_subset(labels, 100, seed=0), torch.arange(100))


def test_stratified_subset_keeps_every_class():
    labels = torch.tensor([0] * 98 + [1, 2])
    assert torch.bincount(labels[stratified_subset(labels, 5, seed=0)]).tolist() == [3, 1, 1]
    with pytest.raises(DaptError) as exc:
        stratified_subset(labels, 2, seed=0)
    assert "at least 3" in one_line(exc)


def test_train_subset_leaves_the_test_set_whole(tmp_path):
    images = load_dataset("digits", 8, data_root=tmp_path, train_subset=100, seed=3)
    assert len(images.train_y) == 100 and len(images.test_y) == 360
    assert torch.bincount(images.train_y).min() >= 9
    again = load_dataset("digits", 8, data_root=tmp_path, train_subset=100, seed=3)
    assert torch.equal(images.train_x, again.train_x)
    assert len(load_dataset("digits", 8, data_root=tmp_path, train_subset=10**6).train_y) == 1437
    with pytest.raises(DaptError):
        load_dataset("digits", 8, data_root=tmp_path, train_subset=9)


def test_registry_and_bad_arguments(tmp_path):
    assert DATASETS.names() == ["fashion_mnist", "digits", "cifar10", "cifar100", "dtd", "caltech101", "mit_indoor", "cub_2011",
                               "folder"]
    with pytest.raises(UnknownNameError):
        load_dataset("imagenet", 32, data_root=tmp_path)
    with pytest.raises(DaptError):
        load_dataset("digits", 0, data_root=tmp_path)


# --- normalisation ------------------------------------------------------------------------------

def test_to_float_and_normalisation_by_hand():
    x = to_float(torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2))
    assert x.dtype == torch.float32 and x[0, :, 0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])
    imagenet = normalise(x, "imagenet")[0, :, 0, 0].tolist()
    assert imagenet == pytest.approx([(0 - 0.485) / 0.229, (0.2 - 0.456) / 0.224, (1 - 0.406) / 0.225], abs=1e-6)
    lite = normalise(x, "lite")[0, :, 0, 0].tolist()
    assert lite == pytest.approx([-127 / 128, (51 - 127) / 128, 1.0], abs=1e-6)
    layer = Normalise("lite")
    assert torch.allclose(layer(x), normalise(x, "lite")) and "mean" not in layer.state_dict()
    assert set(NORMALISATIONS) == {"imagenet", "lite"}
    with pytest.raises(DaptError) as exc:
        Normalise("clip")
    assert "imagenet" in one_line(exc)


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_pickle_with_code_is_refused(tmp_path):
    from dapt.data.formats import read_pickle_dict

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": _Exploit()}))
    with pytest.raises(DaptError, match="refusing to load builtins.print"):
        read_pickle_dict(path)


def test_every_catalog_dataset_has_its_loader_and_a_files_check():
    from dapt.data import imageset

    for name in DATASETS.names():
        assert DATASETS.get(name) is getattr(imageset, f"load_{name}")
        assert callable(DATASETS.facts(name)), name
