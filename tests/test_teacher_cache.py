"""The disk-backed teacher cache: one file per view and part, logits in fp16 and features in int8 with a
per-row scale, chunked builds, memory-mapped reads, atomic publication, bounded memory, shared views."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dapt.core import records
from dapt.core.errors import DaptError
from dapt.data.augment import make_views
from dapt.models.nets import create_model
from dapt.pipeline import config
from dapt.stages.distill import distill, view_count
from dapt.training.device import teacher_dtype
from dapt.training.loop import inference_batch
from dapt.training.teacher_cache import (HEADER_BYTES, SCALE_BYTES, TeacherTargets, check_free_space, dequantize,
                                         feature_rows)

N, K, C, D = 12, 3, 10, 512  # images, views, resnet18's classes and features


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    teacher = create_model("resnet18", C).eval()
    x = torch.randint(0, 256, (N, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    return teacher, x, make_views(N, 16, K, seed=5, augment=True)


def build(setup, cache_dir: Path | None, views=None, **options) -> TeacherTargets:
    teacher, x, default_views = setup
    return TeacherTargets(teacher, 16, x, views or default_views, cache_dir=cache_dir, key_parts=("t",),
                          channels_last=False, **options)


def cache_files(folder: Path, part: str) -> list[Path]:
    return sorted(folder.glob(f"{part}-*"))


def test_quantized_features_are_within_half_a_step_of_float32():
    """int8 with a float32 scale per row: every feature reads back within max|row| / 254 (half a step of
    round(f / s), s = max|row| / 127), signs and zero rows included, whatever the row's magnitude."""
    generator = torch.Generator().manual_seed(0)
    f = torch.randn(64, 300, generator=generator, dtype=torch.float64)
    f *= torch.logspace(-6, 6, 64, dtype=torch.float64)[:, None]  # rows from 1e-6 to 1e6 in magnitude
    f[5] = 0.0
    f[9] = f[9].abs()  # post-ReLU-like
    rows = feature_rows(f.float())
    assert rows.dtype == np.int8 and rows.shape == (64, 300 + SCALE_BYTES)
    back = dequantize(rows, torch.device("cpu")).double()
    bound = f.abs().amax(dim=1, keepdim=True) / 254
    assert (back - f).abs().le(bound * (1 + 1e-6) + 1e-30).all()
    assert torch.equal(back[5], torch.zeros(300, dtype=torch.float64))
    assert (back - f).abs().max() > 0, "int8 must round somewhere: the test would pass on any copy"
    with pytest.raises(DaptError, match="features .* not numbers"):
        feature_rows(torch.tensor([[1.0, float("inf")]]))


def test_a_chunked_build_writes_the_live_outputs_one_file_per_view_and_part(setup, tmp_path):
    cached, live = build(setup, tmp_path, chunk=5), build(setup, None)  # chunks of 5, 5, 2 images per view
    assert [len(cache_files(tmp_path, p)) for p in ("logits", "features")] == [K, K]
    for v in range(K):
        header = json.loads(cached.path(v, "logits").read_bytes()[:HEADER_BYTES])
        assert header == {"format": "dapt-teacher-targets-v3", "key": cached.keys[v], "part": "logits", "images": N,
                          "width": C, "dtype": "float16", "row_bytes": 2 * C}
        on_disk = np.fromfile(cached.path(v, "logits"), dtype=np.float16, offset=HEADER_BYTES).reshape(N, C)
        z, f = live.get(v, torch.arange(N))
        assert torch.equal(torch.from_numpy(on_disk), z.half())
        codes = np.fromfile(cached.path(v, "features"), dtype=np.int8, offset=HEADER_BYTES).reshape(N, D + SCALE_BYTES)
        assert np.array_equal(codes, feature_rows(f))


def test_batches_read_from_the_memory_maps_equal_the_live_outputs_up_to_the_storage(setup, tmp_path):
    cached, live = build(setup, tmp_path, chunk=4), build(setup, None)
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        view, index = int(torch.randint(K, (1,), generator=generator)), torch.randperm(N, generator=generator)[:5]
        (zc, fc), (zl, fl) = cached.get(view, index), live.get(view, index)
        assert zc.dtype == fc.dtype == torch.float32 and zc.device.type == "cpu"
        assert torch.equal(zc, zl.half().float())
        assert (fc - fl).abs().le(fl.abs().amax(dim=1, keepdim=True) / 254 * (1 + 1e-6)).all()


def test_a_logit_student_caches_logits_only_and_a_feature_student_adds_the_features(setup, tmp_path, capsys):
    kd = build(setup, tmp_path, features=False)
    assert cache_files(tmp_path, "features") == [] and len(cache_files(tmp_path, "logits")) == K
    assert kd.get(0, torch.arange(3))[1] is None
    logits = [p.read_bytes() for p in cache_files(tmp_path, "logits")]
    capsys.readouterr()
    crd = build(setup, tmp_path, features=True)
    assert f"{K} of {K} views" in capsys.readouterr().out
    assert len(cache_files(tmp_path, "features")) == K
    assert [p.read_bytes() for p in cache_files(tmp_path, "logits")] == logits, "the logits were rewritten"
    assert crd.get(1, torch.arange(3))[1].shape == (3, D)
    # in a study with a feature student, the logit students store features too (``cache_features``)
    shared = tmp_path / "shared"
    build(setup, shared, features=False, store_features=True)
    assert len(cache_files(shared, "features")) == K


def test_a_longer_run_reuses_the_views_of_a_shorter_one_and_identical_views_share_a_file(setup, tmp_path, capsys):
    teacher, x, _ = setup
    build(setup, tmp_path, views=make_views(N, 16, 2, seed=5, augment=True))
    first = sorted(p.read_bytes() for p in cache_files(tmp_path, "logits"))
    capsys.readouterr()
    longer = build(setup, tmp_path, views=make_views(N, 16, 5, seed=5, augment=True))
    assert "3 of 5 views" in capsys.readouterr().out
    assert len(cache_files(tmp_path, "logits")) == 5 and longer.keys[:2] == build(setup, tmp_path).keys[:2]
    assert all(b in [p.read_bytes() for p in cache_files(tmp_path, "logits")] for b in first)
    plain = tmp_path / "plain"
    same = build(setup, plain, views=make_views(N, 16, 4, seed=5, augment=False))
    assert len(set(same.keys)) == 1 and len(cache_files(plain, "logits")) == 1
    assert torch.equal(same.get(3, torch.arange(N))[0], same.get(0, torch.arange(N))[0])


def test_the_teachers_precision_is_part_of_the_key_and_live_equals_cached_in_it(setup, tmp_path):
    bf16 = build(setup, tmp_path, dtype=torch.bfloat16)
    assert set(bf16.keys).isdisjoint(build(setup, tmp_path).keys)
    live = build(setup, None, dtype=torch.bfloat16)
    index = torch.arange(N)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a student's autocast does not change the teacher's
        zl, _ = live.get(2, index)
    assert torch.equal(bf16.get(2, index)[0], zl.half().float())
    assert not torch.equal(zl, build(setup, None).get(2, index)[0]), "bf16 must differ from float32 somewhere"


def test_teacher_amp_auto_picks_what_the_device_computes_natively():
    cpu = teacher_dtype("auto", torch.device("cpu"))
    has_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert cpu == (torch.bfloat16 if has_bf16 else torch.float32)
    assert teacher_dtype("off", torch.device("cpu")) == torch.float32
    assert teacher_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert teacher_dtype("auto", torch.device("mps")) == torch.float16
    with pytest.raises(DaptError, match="teacher_amp: fp16 on the CPU"):
        teacher_dtype("fp16", torch.device("cpu"))
    with pytest.raises(config.ConfigError, match="teacher_amp: fp16 on the CPU"):
        config.validate(config.DistillConfig, {"teacher_amp": "fp16", "device": "cpu"})


def test_a_temp_file_of_a_killed_build_is_not_read_and_is_cleaned_by_the_next_build(setup, tmp_path, capsys):
    complete = build(setup, tmp_path)
    path = complete.path(1, "features")
    dead = subprocess.Popen(["true"])
    dead.wait()
    # what a build killed before its rename leaves: a temp named after the dead writer, here even a whole one
    temp = tmp_path / f".{path.name}.{dead.pid}.abc.tmp"
    path.rename(temp)
    capsys.readouterr()
    build(setup, tmp_path)
    assert f"1 of {K} views" in capsys.readouterr().out, "the temp file of a killed build was read as a cache"
    assert not temp.exists() and path.is_file() and len(list(tmp_path.iterdir())) == 2 * K


@pytest.mark.parametrize("damage", ["torn", "other_key", "not_a_cache"])
def test_a_cache_file_that_is_torn_or_not_this_caches_is_rebuilt(setup, tmp_path, capsys, damage):
    path = build(setup, tmp_path).path(2, "logits")
    whole = path.read_bytes()
    if damage == "torn":
        path.write_bytes(whole[:-100])
    elif damage == "other_key":
        header = json.loads(whole[:HEADER_BYTES]) | {"key": "0" * 16}
        path.write_bytes(json.dumps(header).encode().ljust(HEADER_BYTES) + whole[HEADER_BYTES:])
    else:
        path.write_bytes(b"\x80garbage")
    capsys.readouterr()
    build(setup, tmp_path)
    assert f"1 of {K} views" in capsys.readouterr().out and path.read_bytes() == whole


def test_a_file_that_changes_under_a_reader_is_one_clear_error(setup, tmp_path):
    reader = build(setup, tmp_path)
    reader.path(1, "logits").unlink()
    with pytest.raises(DaptError, match=r"teacher cache file .*logits-.* went missing or changed during training"):
        reader.get(1, torch.arange(2))


def test_the_free_space_check_names_what_is_needed_and_where(tmp_path):
    import shutil

    free = shutil.disk_usage(tmp_path).free
    check_free_space(tmp_path, free // 2)
    with pytest.raises(DaptError, match=rf"needs [0-9.]+ GB in {tmp_path.as_posix()} but its disk has [0-9.]+ GB "
                                        rf"free: .*lower cache_views, or set teacher_cache: off"):
        check_free_space(tmp_path, free + 10**12)


def test_inference_batches_shrink_with_the_input_size_and_suit_the_device():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")  # a device object needs no CUDA to exist
    assert [inference_batch(size, cpu) for size in (16, 32, 48, 64, 96, 224)] == [256, 256, 113, 64, 28, 8]
    assert [inference_batch(size, gpu) for size in (32, 64, 224, 2048)] == [500, 500, 40, 16]


def test_the_default_is_a_fresh_view_every_epoch():
    assert view_count(None, 3) == 3 and view_count(None, 250) == 250 and view_count(5, 250) == 5


PEAK_MEMORY = """
    import resource, sys, torch
    from pathlib import Path
    from dapt.data.augment import make_views
    from dapt.training.teacher_cache import TeacherTargets

    class Wide(torch.nn.Module):  # a cheap teacher with ResNet-50's feature width
        def __init__(self):
            super().__init__()
            self.body, self.head = torch.nn.Linear(3, 2048), torch.nn.Linear(2048, 10)

        def forward_features(self, x):
            f = self.body(x.mean((2, 3)))
            return f, self.head(f)

    def targets(n, k, folder):
        x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
        return TeacherTargets(Wide(), 8, x, make_views(n, 8, k, 0, True), cache_dir=Path(sys.argv[1]) / folder,
                              key_parts=(), channels_last=False, chunk=250)

    targets(500, 1, "warm-up")  # every code path and allocation size once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    targets(8000, 4, "big")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024, sum(p.stat().st_size for p in (Path(sys.argv[1]) / "big").iterdir()))
"""


@pytest.mark.slow  # builds an 8,000-image cache in a fresh interpreter
def test_a_build_holds_one_chunk_in_memory_not_the_cache(tmp_path):
    """Build a 66 MB cache in chunks of 250 images in a fresh process: its peak memory (ru_maxrss)
    grows by far less than the cache (an in-memory build would hold the whole table)."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(PEAK_MEMORY), str(tmp_path)], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    growth, size = map(int, out.split()[-2:])
    assert size == 4 * (2 * HEADER_BYTES + 8000 * (2 * 10 + 2048 + SCALE_BYTES))
    assert growth < size / 4, f"the build's peak memory grew by {growth / 1e6:.1f} MB for a {size / 1e6:.1f} MB cache"


@pytest.mark.slow  # trains a teacher (once) and two students per distiller
@pytest.mark.parametrize("distiller", ["kd", "align_uniform"])
def test_a_cached_student_and_a_live_one_on_the_same_views_get_the_same_targets(trained_teacher, tmp_path, distiller):
    """A kd and an align_uniform student, each trained twice on a fresh view per epoch, from the teacher cache
    and from the live teacher, with an lr so small that the student stays where it started: every epoch's
    loss terms then compare the teacher's outputs on that epoch's view with the same student outputs, and
    they agree to the cache's rounding (fp16 logits, int8 features); targets of another view would move
    them by percents. How far the students end apart when they learn: benchmarks/study_speed.py."""
    teacher_dir, ds = trained_teacher
    runs = {}
    for mode in ("on", "off"):
        cfg = config.validate(config.DistillConfig, {
            "dataset": "digits", "image_size": 16, "train_subset": 300, "batch_size": 50, "precise_bn": None,
            "device": "cpu", "student": "mobilenet_v2", "teacher": str(teacher_dir), "distiller": distiller,
            "epochs": 3, "lr": 1e-12, "teacher_cache": mode, "teacher_amp": "off", "run_dir": str(tmp_path / mode)})
        record = records.RunRecord.start(cfg.run_dir, "distill", config.as_dict(cfg))
        result = distill(cfg, ds, record)
        record.finish()
        runs[mode] = (record.metrics, result.student_logits)
    (cached, cached_logits), (live, live_logits) = runs["on"], runs["off"]
    assert cached["teacher_precision"] == live["teacher_precision"] == "float32"
    terms = ("loss_kd", "loss_embed") if distiller == "align_uniform" else ("loss_kd",)
    assert [[c[t] for t in terms] for c in cached["history"]] == \
        [[pytest.approx(l[t], rel=2e-3) for t in terms] for l in live["history"]]
    assert len({c["loss_kd"] for c in cached["history"]}) == 3, "each epoch reads its own view"
    assert torch.equal(cached_logits.argmax(1), live_logits.argmax(1)) and cached["test_acc"] == live["test_acc"]
