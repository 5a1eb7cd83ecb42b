"""Read back what an offline wandb run wrote: the records of its ``run-*.wandb`` file.

wandb 0.31 has no reader for its offline files (``wandb.Api`` reads the server only) and writes
``config.yaml`` and ``wandb-summary.json`` only when syncing. The file is a LevelDB-style log
(wandb's own ``datastore`` format): a 7-byte header ``:W&B`` + version, then 32 KiB blocks of
chunks, each ``crc32 (4) | length (2) | type (1) | data``, type 1 a whole record, 2/3/4 the first,
middle and last pieces of one; every record is a ``wandb_internal_pb2.Record`` protobuf.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb log"
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0:
            pos += left
            continue
        pending += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def offline_run(run_folder: Path) -> dict:
    """The run's name, group, job type, project, config, summary, history rows, files, artifacts and exit code."""
    [log] = Path(run_folder).glob("wandb/offline-run-*/run-*.wandb")
    run: dict = {"config": {}, "summary": {}, "history": [], "files": [], "artifacts": [], "exit_code": None}
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.update(name=r.display_name, group=r.run_group, job_type=r.job_type, project=r.project)
            run["config"].update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            run["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "summary":
            for u in record.summary.update:
                run["summary"]["/".join(u.nested_key) or u.key] = json.loads(u.value_json)
        elif kind == "history":
            run["history"].append({"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                                   for i in record.history.item})
        elif kind == "files":
            run["files"].extend(f.path for f in record.files.files)
        elif kind == "artifact":
            a = record.artifact
            run["artifacts"].append({"name": a.name, "type": a.type, "files": [c.path for c in a.manifest.contents]})
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run
