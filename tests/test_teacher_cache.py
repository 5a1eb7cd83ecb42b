"""The disk-backed teacher cache: chunked build, memory-mapped reads, atomic publication, bounded memory."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dapt.data.augment import make_views
from dapt.stages.distill import view_count
from dapt.core.errors import DaptError
from dapt.models.nets import create_model
from dapt.training.teacher_cache import HEADER_BYTES, TeacherTargets, check_free_space
from dapt.training.loop import inference_batch

N, K = 12, 3


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    teacher = create_model("resnet18", 10).eval()
    x = torch.randint(0, 256, (N, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    return teacher, x, make_views(N, 16, K, seed=5, augment=True)


def build(setup, cache_dir: Path | None, chunk: int | None = None) -> TeacherTargets:
    teacher, x, views = setup
    return TeacherTargets(teacher, 16, x, views, cache_dir=cache_dir, key_parts=("t",), channels_last=False,
                          chunk=chunk)


def one_shot(setup) -> torch.Tensor:
    """The whole table in memory, [K, N, C + D] fp16: every view's teacher outputs in one forward pass."""
    live = build(setup, None)
    return torch.stack([torch.cat(live.get(v, torch.arange(N)), dim=1).half() for v in range(K)])


def test_a_build_in_chunks_writes_the_one_shot_outputs_in_view_major_order(setup, tmp_path):
    cached = build(setup, tmp_path, chunk=5)  # chunks of 5, 5, 2 images per view
    header = json.loads(cached.path.read_bytes()[:HEADER_BYTES])
    assert header | {"key": None} == {"format": "dapt-teacher-targets-v2", "key": None, "views": K, "images": N,
                                      "classes": 10, "features": 512, "dtype": "float16",
                                      "layout": "[view][image][logits | features]"}
    on_disk = np.fromfile(cached.path, dtype=np.float16, offset=HEADER_BYTES).reshape(K, N, 522)
    torch.testing.assert_close(torch.from_numpy(on_disk), one_shot(setup), atol=0, rtol=0)


def test_batches_read_from_the_memory_map_equal_the_in_memory_table(setup, tmp_path):
    cached, table = build(setup, tmp_path, chunk=4), one_shot(setup)
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        view, index = int(torch.randint(K, (1,), generator=generator)), torch.randperm(N, generator=generator)[:5]
        logits, features = cached.get(view, index)
        assert logits.dtype == features.dtype == torch.float32 and logits.device.type == "cpu"
        assert torch.equal(logits, table[view, index, :10].float())
        assert torch.equal(features, table[view, index, 10:].float())


def test_a_temp_file_of_a_killed_build_is_not_read_and_is_cleaned_by_the_next_build(setup, tmp_path, capsys):
    complete = build(setup, tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    # what a build killed before its rename leaves: a temp named after the dead writer, here even a whole one
    temp = tmp_path / f".{complete.path.name}.{dead.pid}.abc.tmp"
    complete.path.rename(temp)
    capsys.readouterr()
    again = build(setup, tmp_path)
    assert "cached in" in capsys.readouterr().out, "the temp file of a killed build was read as a cache"
    assert not temp.exists() and [p.name for p in tmp_path.iterdir()] == [again.path.name]


@pytest.mark.parametrize("damage", ["torn", "other_key", "not_a_cache"])
def test_a_cache_file_that_is_torn_or_not_this_caches_is_rebuilt(setup, tmp_path, capsys, damage):
    path = build(setup, tmp_path).path
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
    assert "cached in" in capsys.readouterr().out and path.read_bytes() == whole


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


def test_the_default_number_of_views_is_min_of_epochs_and_the_measured_knee():
    from dapt.pipeline.config import DEFAULT_VIEWS

    assert view_count(None, 3) == 3 and view_count(None, 250) == DEFAULT_VIEWS and view_count(5, 250) == 5


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

    def targets(n, k):
        x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
        return TeacherTargets(Wide(), 8, x, make_views(n, 8, k, 0, True), cache_dir=Path(sys.argv[1]),
                              key_parts=(), channels_last=False, chunk=250)

    targets(500, 1)  # warm-up: every code path and allocation size once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    big = targets(4000, 4)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024, big.path.stat().st_size)
"""


def test_a_build_holds_one_chunk_in_memory_not_the_cache(tmp_path):
    """Build a 66 MB cache in chunks of 250 images in a fresh process: its peak memory (ru_maxrss)
    grows by far less than the cache (an in-memory build holds the whole table, twice while stacking)."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(PEAK_MEMORY), str(tmp_path)], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    growth, size = map(int, out.split()[-2:])
    assert size == HEADER_BYTES + 4 * 4000 * 2058 * 2
    assert growth < size / 4, f"the build's peak memory grew by {growth / 1e6:.1f} MB for a {size / 1e6:.1f} MB cache"
