"""The last step of a job: the blocks assembled into the store's arrays, the top-k merged.

Each per-image column becomes one .npy file (N, ...) filled block by block through a memory
map, so memory stays flat in N; each layer's top-k is folded block by block (`merge.fold_topk`)
and written as .npy files. The manifest, written last, lists them and says `complete`; then the
block files go. A job killed in here leaves its blocks: the rerun finishes again.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..inspect.receptive import ReceptiveField
from .block import block_ranges
from .layout import BLOCKS, MANIFEST, TMP, TOP, block_meta, read_block, write_json
from .merge import fold_topk
from .spec import JobSpec

OPTIONAL_ROWS = ("predictions", "confidences", "thumbnails")


def finish_store(
    out: Path, manifest: dict, spec: JobSpec, key: str, fields: dict[str, ReceptiveField]
) -> dict:
    """Assemble the store at `out` from its (complete, valid) blocks; the final manifest."""
    length = manifest["data"]["length"]
    ranges = block_ranges(length, spec.block_size)

    def blocks():
        for b, (start, stop) in enumerate(ranges):
            found = read_block(out, key, spec, b, start, stop)
            if found is None:
                raise RuntimeError(f"Block {b} of the store at {out} is missing or unreadable")
            yield found

    first = next(blocks())
    # predictions only where every block has them (as in the in-process pass)
    present = set.intersection(*(set(block_meta(out, b)["rows"]) for b in range(len(ranges))))
    names = [n for n in ("features", "labels", *OPTIONAL_ROWS) if n in present]
    arrays = {
        name: np.lib.format.open_memmap(
            out / f"{TMP}{name}.npy",
            mode="w+",
            dtype=first.rows[name].dtype,
            shape=(length, *first.rows[name].shape[1:]),
        )
        for name in names
    }
    tops: dict[str, dict | None] = dict.fromkeys(spec.layers)
    map_sizes = first.map_sizes
    for found in blocks():
        for name, array in arrays.items():
            array[found.start : found.stop] = found.rows[name]
        for layer in spec.layers:
            tops[layer] = fold_topk(tops[layer], found.top[layer], spec.k)
    rows = {}
    for name, array in arrays.items():
        array.flush()
        rows[name] = {"file": f"{name}.npy", "dtype": array.dtype.str, "shape": list(array.shape)}
    arrays.clear()  # the maps closed before the files are renamed
    for name in rows:
        (out / f"{TMP}{name}.npy").replace(out / f"{name}.npy")
    manifest = dict(manifest)
    manifest["rows"] = rows
    manifest["features"] = {
        "layer": spec.feature_layer,
        "from_input": spec.from_input,
        "pooled": first.pooled,
    }
    manifest["top"] = {
        layer: write_top(out, layer, tops[layer], spec, map_sizes[layer], fields[layer])
        for layer in spec.layers
    }
    manifest["complete"] = True
    write_json(out / MANIFEST, manifest)
    shutil.rmtree(out / BLOCKS, ignore_errors=True)
    return manifest


def write_top(
    out: Path,
    layer: str,
    top: dict[str, np.ndarray],
    spec: JobSpec,
    map_size: tuple[int, int],
    field: ReceptiveField,
) -> dict:
    """One layer's merged top-k as .npy files under top/<layer>/; its manifest entry."""
    m = top["values"].shape[1]
    if m < spec.k:
        what = "images" if spec.distinct else "positions (images x map positions)"
        raise ValueError(
            f"k={spec.k} is larger than the {m} {what} the dataset gives for layer {layer!r}; "
            f"choose k <= {m}"
        )
    width = map_size[1]
    arrays = {
        "values": top["values"].astype(np.float32),
        "indices": top["index"].astype(np.int64),
        "ys": top["position"] // width,
        "xs": top["position"] % width,
        "labels": top["label"].astype(np.int64),
    }
    folder = out / TOP / layer
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    return {
        "folder": f"{TOP}/{layer}",
        "channels": int(top["values"].shape[0]),
        "k": spec.k,
        "distinct": spec.distinct,
        "map_size": list(map_size),
        "field": {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(field).items()},
    }
