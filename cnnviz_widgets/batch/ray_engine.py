"""The Ray Data engine: the blocks as rows of a Ray Dataset, `map_batches` on model actors.

Each actor (one per worker: an actor pool of `workers`, with `num_cpus`/`num_gpus` each) builds the
model and the dataset from their factories once, checks they hash as the driver's did, and
turns each block index it is given into the block's results (`block.compute_block`, as the
in-process engine). The results stream back to the driver, which writes each block's file as
it arrives: the store needs no file system shared with the workers, and a job killed midway
keeps every block written so far. A worker that dies is restarted by Ray.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .block import BlockResult, compute_block
from .spec import Factory, JobSpec, load_factory


class BlockWorker:
    """A model actor: the model and the data, rebuilt from their factories."""

    def __init__(
        self,
        model_factory: Factory,
        dataset_factory: Factory,
        spec: JobSpec,
        length: int,
        fingerprints: tuple[str, str],
        device: Any,
        threads: int,
    ):
        import torch

        from ..inspect.fingerprint import data_fingerprint, weights_fingerprint

        if threads > 0:
            torch.set_num_threads(threads)
        self.model = load_factory(model_factory)()
        self.dataset = load_factory(dataset_factory)()
        self.spec, self.length, self.device = spec, length, device
        found = (weights_fingerprint(self.model), data_fingerprint(self.dataset))
        for what, want, got in zip(("model", "dataset"), fingerprints, found, strict=True):
            if want != got:
                raise RuntimeError(
                    f"The {what} factory gave a Ray worker another {what} than the driver "
                    f"(fingerprint {got}, not {want}): a factory must give the same {what} on "
                    "every call (load trained weights, seed any random initialisation)"
                )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = [int(b) for b in batch["block"]]
        results = [
            pickle.dumps(compute_block(self.model, self.dataset, self.spec, b, self.length,
                                       self.device), protocol=5)
            for b in ids
        ]  # fmt: skip
        return {"block": np.asarray(ids, np.int64), "result": np.array(results, dtype=object)}


def gpus_per_worker(num_gpus: float | None, workers: int) -> float:
    """`num_gpus` if given, else the cluster's GPUs shared by the workers (at most 1 each)."""
    if num_gpus is not None:
        return float(num_gpus)
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    return min(1.0, gpus / workers) if gpus else 0.0


def _blocks_option(function: Callable, count: int) -> dict[str, int]:
    """How this Ray version asks for `count` input blocks (`override_num_blocks` since 2.10)."""
    if "override_num_blocks" in inspect.signature(function).parameters:
        return {"override_num_blocks": count}
    return {"parallelism": count}


def run_ray(
    model_factory: Factory,
    dataset_factory: Factory,
    spec: JobSpec,
    todo: Sequence[int],
    length: int,
    write: Callable[[BlockResult], None],
    *,
    fingerprints: tuple[str, str],
    workers: int = 1,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float | None = None,
    device: Any = None,
    progress: bool = True,
) -> None:
    """Compute the blocks of `todo` on Ray (joining `address`, or a local cluster started
    here and shut down at the end when Ray is not initialised yet); `write` each result."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        items = [{"block": b} for b in todo]
        data = ray.data.from_items(items, **_blocks_option(ray.data.from_items, len(items)))
        results = data.map_batches(
            BlockWorker,
            fn_constructor_args=(
                model_factory, dataset_factory, spec, length, fingerprints, device,
                max(1, int(num_cpus)),
            ),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=num_cpus,
            num_gpus=gpus_per_worker(num_gpus, workers),
        )  # fmt: skip
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            for payload in batch["result"]:
                write(pickle.loads(payload))
    finally:
        if started:
            ray.shutdown()
