"""Where a store keeps what: file names, atomic writes, block files and their checks.

    out/manifest.json        the job (model and data fingerprints, spec), then the index of
                             the store's files; `"complete": true` once the store is whole
    out/blocks/000042.npz    one finished block while the job runs (removed once complete)

A file appears whole or not at all: it is written under a temporary name in the same folder,
flushed to disk, then renamed (`atomic_write`). A block's file is its manifest entry: it holds
its job's key, its index range and its arrays, so a rerun reuses exactly the blocks of the same
job whose files read back whole (`read_block`) and computes the rest.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from .block import TOP_FIELDS, BlockResult
from .spec import JobSpec

FORMAT = "cnnviz-store"
VERSION = 1
MANIFEST = "manifest.json"
BLOCKS = "blocks"
TOP = "top"
TMP = ".tmp-"


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` whole or not at all: into a temporary file beside it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP}{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    """`value` as JSON (sorted keys: the same value gives the same bytes), atomically."""
    text = json.dumps(value, indent=1, sort_keys=True) + "\n"
    atomic_write(path, lambda file: file.write(text.encode()))


def read_manifest(out: Path) -> dict | None:
    """The store's manifest, None where there is none; a ValueError for one of another kind."""
    path = out / MANIFEST
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not the manifest of a cnnviz store")
    if manifest.get("version") != VERSION:
        raise ValueError(
            f"The store at {out} has layout version {manifest.get('version')}; this version of "
            f"cnnviz-widgets reads version {VERSION}: run the job again into a new folder"
        )
    return manifest


def remove_temporary(folder: Path) -> None:
    """Remove what a killed job left half-written in `folder` (its temporary files)."""
    if folder.is_dir():
        for path in folder.glob(f"{TMP}*"):
            path.unlink(missing_ok=True)


def block_path(out: Path, block: int) -> Path:
    return out / BLOCKS / f"{block:06d}.npz"


def write_block(out: Path, key: str, spec: JobSpec, result: BlockResult) -> None:
    """Block `result` as one .npz (rows, per-layer top-k, and its meta), atomically."""
    meta = {
        "key": key,
        "block": result.block,
        "start": result.start,
        "stop": result.stop,
        "rows": sorted(result.rows),
        "map_sizes": {name: list(size) for name, size in result.map_sizes.items()},
        "pooled": result.pooled,
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)}
    arrays.update({f"rows.{name}": array for name, array in result.rows.items()})
    for i, layer in enumerate(spec.layers):
        arrays.update({f"top{i}.{f}": result.top[layer][f] for f in TOP_FIELDS})
    atomic_write(block_path(out, result.block), lambda file: np.savez(file, **arrays))


def block_meta(out: Path, block: int) -> dict:
    """The meta of a written block (its key, range, row names, map sizes), its arrays unread."""
    with np.load(block_path(out, block), allow_pickle=False) as npz:
        return json.loads(npz["meta"].tobytes())


def read_block(
    out: Path, key: str, spec: JobSpec, block: int, start: int, stop: int
) -> BlockResult | None:
    """Block `block` as written by job `key`, read whole (every member's CRC checked); None
    where its file is missing, unreadable, or from another job or range."""
    path = block_path(out, block)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].tobytes())
            found = (meta["key"], meta["block"], meta["start"], meta["stop"])
            if found != (key, block, start, stop):
                return None
            rows = {name: npz[f"rows.{name}"] for name in meta["rows"]}
            top = {
                layer: {f: npz[f"top{i}.{f}"] for f in TOP_FIELDS}
                for i, layer in enumerate(spec.layers)
            }
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    if "features" not in rows or any(len(a) != stop - start for a in rows.values()):
        return None
    if any(len({a.shape for a in arrays.values()}) != 1 for arrays in top.values()):
        return None
    return BlockResult(
        block=block,
        start=start,
        stop=stop,
        rows=rows,
        top=top,
        map_sizes={name: tuple(size) for name, size in meta["map_sizes"].items()},
        pooled=meta["pooled"],
    )
