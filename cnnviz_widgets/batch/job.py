"""`run_batch`: the widgets' dataset pass over a whole dataset as a chunked, resumable job.

The driver builds the model and the dataset from their factories, checks the spec and the
layers' receptive fields before any work, and writes the job into the store's manifest. The
dataset is cut into blocks of `block_size` images; blocks whose files are already there (a
rerun after a killed job or a failed worker) are skipped, the others computed by Ray Data
(`ray_engine`) or in this process (`local`), each written as soon as it is done. Once every
block is there the store is assembled (`finish`): the same store whichever engine ran which
block, and however often the job was interrupted.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..inspect.dataset import check_dataset
from ..inspect.fingerprint import data_fingerprint, weights_fingerprint
from ..inspect.items import read_item
from ..inspect.receptive import receptive_fields
from .block import block_ranges
from .finish import finish_store
from .layout import (
    BLOCKS,
    FORMAT,
    MANIFEST,
    TOP,
    VERSION,
    read_block,
    read_manifest,
    remove_temporary,
    write_block,
    write_json,
)
from .spec import Factory, job_key, load_factory, make_spec
from .store import Store, StoreMismatchError, mismatch, open_store

ENGINES = ("auto", "ray", "local")


@dataclass
class BatchRun:
    """What `run_batch` did: the store, the engine, and how many blocks it computed/skipped."""

    store: Store
    engine: str  # "ray", "local", or "none" (the store was complete already)
    computed: int
    skipped: int
    seconds: float


def pick_engine(engine: str) -> str:
    """The engine to run: "ray" or "local" ("auto": Ray where installed, `[distributed]`)."""
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if engine == "local":
        return engine
    try:
        import ray.data  # noqa: F401
    except ImportError as err:
        if engine == "ray":
            raise ImportError(
                "engine='ray' needs Ray Data: pip install 'cnnviz-widgets[distributed]'"
            ) from err
        return "local"
    return "ray"


def prepare(out: Path, manifest: dict, overwrite: bool) -> dict | None:
    """Make `out` ready for the job in `manifest`; the manifest already there when it is the
    same job's (a rerun), None for a fresh store. Refuses another job's store, or a folder
    that holds something else, unless `overwrite` (which removes the old store's files)."""
    found = read_manifest(out) if out.exists() else None
    if found is not None and found["key"] == manifest["key"]:
        return found
    if found is not None and not overwrite:
        for what in ("model", "data"):
            if found[what]["fingerprint"] != manifest[what]["fingerprint"]:
                raise StoreMismatchError(
                    mismatch(out, "model" if what == "model" else "dataset", found[what],
                             manifest[what]["fingerprint"], manifest[what]["type"])
                )  # fmt: skip
        raise StoreMismatchError(
            f"The store at {out} was made by another job (layers, k, feature layer or sizes: "
            f"{found['job']}); write this one ({manifest['job']}) to a new folder, or pass "
            "overwrite=True (--overwrite) to replace it"
        )
    if found is not None:  # overwrite: remove the old store's own files only
        for entry in found.get("rows", {}).values():
            (out / entry["file"]).unlink(missing_ok=True)
        for name in (BLOCKS, TOP):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / MANIFEST).unlink()
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a store; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / MANIFEST, manifest)
    return None


def run_batch(
    model_factory: Factory,
    dataset_factory: Factory,
    out: str | Path,
    layers: Sequence[Any] = (),
    k: int = 9,
    *,
    distinct: bool = True,
    feature_layer: Any = None,
    dtype: Any = np.float32,
    batch_size: int = 256,
    block_size: int = 1024,
    thumbnails: int | None = None,
    classes: Sequence[str] | None = None,
    workers: int = 1,
    engine: str = "auto",
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float | None = None,
    device: Any = None,
    overwrite: bool = False,
    progress: bool = True,
) -> BatchRun:
    """Run the widgets' dataset pass over the dataset into a store at `out`; resumable.

    `model_factory`, `dataset_factory`: zero-argument functions (or their import paths,
    "package.module:function") that give the model and a map-style dataset of (image, label)
    items, the same on every call (every Ray worker calls them). The store keeps the features
    of `feature_layer` (default: the classifier's input), labels, predictions, the top-`k` of
    each channel of `layers` with their positions (`distinct`: an image at most once per
    channel), and `thumbnails` (longest side in pixels) if asked: see `cnnviz_widgets.batch`.

    `engine`: "ray" (Ray Data: `workers` model actors of `num_cpus`/`num_gpus` each, on the
    cluster at `address` or a local one), "local" (this process), "auto" (Ray if installed).
    `block_size` images per block (a multiple of `batch_size`). A rerun of the same job
    computes only the blocks missing; another job's store is refused unless `overwrite`.
    """
    began = time.perf_counter()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer; got {workers!r}")
    chosen = pick_engine(engine)
    model = load_factory(model_factory)()
    dataset = load_factory(dataset_factory)()
    check_dataset(dataset, "run_batch")
    length = len(dataset)
    spec = make_spec(
        model, layers, k, distinct=distinct, feature_layer=feature_layer, dtype=dtype,
        batch_size=batch_size, block_size=block_size, thumbnails=thumbnails, classes=classes,
    )  # fmt: skip
    if spec.layers and spec.distinct and spec.k > length:
        raise ValueError(
            f"k={k} is larger than the dataset ({length} images): each image counts once per "
            f"channel, so choose k <= {length} (or distinct=False)"
        )
    image = read_item(dataset, 0)[0]
    size, channels = tuple(image.shape[-2:]), image.shape[0]
    fields = receptive_fields(model, size, spec.layers, channels=channels) if spec.layers else {}
    fingerprints = (weights_fingerprint(model), data_fingerprint(dataset))
    key = job_key(spec, *fingerprints, length)
    manifest = _manifest(spec, key, fingerprints, model, dataset, image)
    out = Path(out)
    found = prepare(out, manifest, overwrite)
    if found is not None and found.get("complete"):
        store = open_store(out)
        return BatchRun(store, "none", 0, manifest["blocks"]["count"], since(began))
    remove_temporary(out)
    remove_temporary(out / BLOCKS)
    ranges = block_ranges(length, spec.block_size)
    todo = [b for b, (s, e) in enumerate(ranges) if read_block(out, key, spec, b, s, e) is None]

    def write(result):
        write_block(out, key, spec, result)

    if todo and chosen == "ray":
        from .ray_engine import run_ray

        run_ray(
            model_factory, dataset_factory, spec, todo, length, write, fingerprints=fingerprints,
            workers=workers, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
            device=device, progress=progress,
        )  # fmt: skip
    elif todo:
        from .local import run_local

        run_local(model, dataset, spec, todo, length, write, device=device, progress=progress)
    finish_store(out, manifest, spec, key, fields)
    store = open_store(out)
    return BatchRun(store, chosen, len(todo), len(ranges) - len(todo), since(began))


def _manifest(spec, key: str, fingerprints: tuple, model, dataset, image) -> dict:
    """The store's manifest, not complete yet: the job, and the model and data it reads."""
    names = spec.classes or getattr(dataset, "classes", None)
    length = len(dataset)
    return {
        "format": FORMAT,
        "version": VERSION,
        "complete": False,
        "key": key,
        "model": {"fingerprint": fingerprints[0], "type": type(model).__name__},
        "data": {
            "fingerprint": fingerprints[1],
            "type": type(dataset).__name__,
            "length": length,
            "image_size": list(image.shape[-2:]),
            "channels": int(image.shape[0]),
            "classes": None if names is None else [str(n) for n in names],
        },
        "job": spec.as_dict(),
        "blocks": {"size": spec.block_size, "count": len(block_ranges(length, spec.block_size))},
    }


def since(began: float) -> float:
    return round(time.perf_counter() - began, 3)
