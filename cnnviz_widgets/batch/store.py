"""A finished store opened for reading: memory-mapped rows, per-layer top-k, fingerprints.

>>> store = open_store("out/", model=model, dataset=dataset)  # refuses another model or data
>>> store.features            # (N, D) read-only memory map: pages are read when touched
>>> store.top("conv3")        # a TopActivations, as `top_activations` gives
>>> store.as_features()       # a `Features`, as `feature_pass` gives

Opening reads the manifest and the .npy headers only (milliseconds, memory flat in N); given a
model or a dataset, it also hashes its weights or 16 of its items (`inspect.fingerprint`).
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..inspect.dataset import Features, TopActivations
from ..inspect.fingerprint import data_fingerprint, weights_fingerprint
from ..inspect.receptive import ReceptiveField
from .layout import read_manifest


class StoreMismatchError(ValueError):
    """A store opened (or a job resumed) with another model or dataset than it was made with."""


def mismatch(path: Path, what: str, stored: dict, given: str | None, given_type: str) -> str:
    """The error for a `what` ("model" or "dataset") whose fingerprint is not the store's."""
    hashed = "weights fingerprint" if what == "model" else "data fingerprint"
    return (
        f"The store at {path} was made with a {what} whose {hashed} is {stored['fingerprint']} "
        f"({stored['type']}); the {what} given has {given or 'no fingerprint'} ({given_type}). "
        f"Open it with the {what} it was made with, or make a store for this {what}: "
        "run_batch(..., out=<a new folder>) or `cnnviz-batch ... --out <a new folder>` "
        "(overwrite=True / --overwrite replaces this one)"
    )


def check_model(path: Path, manifest: dict, model: Any) -> None:
    """Raise `StoreMismatchError` unless `model`'s weights are the store's."""
    given = weights_fingerprint(model)
    if given != manifest["model"]["fingerprint"]:
        kind = type(model).__name__
        raise StoreMismatchError(mismatch(path, "model", manifest["model"], given, kind))


def check_data(path: Path, manifest: dict, dataset: Any) -> None:
    """Raise `StoreMismatchError` unless `dataset` is the store's (length, sampled items)."""
    given = data_fingerprint(dataset)
    if given != manifest["data"]["fingerprint"]:
        kind = f"{type(dataset).__name__} of {len(dataset)}"
        raise StoreMismatchError(mismatch(path, "dataset", manifest["data"], given, kind))


def field_from(entry: dict) -> ReceptiveField:
    """The `ReceptiveField` a manifest entry keeps (its lists back to tuples)."""
    return ReceptiveField(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()})


class Store:
    """A complete store (see `open_store`); arrays are read-only memory maps."""

    def __init__(self, path: Path, manifest: dict, dataset: Any = None, display: Any = None):
        self.path, self.manifest = path, manifest
        self.dataset, self.display = dataset, display
        self._rows = {
            name: np.load(path / entry["file"], mmap_mode="r")
            for name, entry in manifest["rows"].items()
        }
        self._tops: dict[str, TopActivations] = {}

    def __len__(self) -> int:
        return self.manifest["data"]["length"]

    def __repr__(self) -> str:
        n, d = self.features.shape
        return f"<Store {self.path}: {n:,} images x {d} features, top-{self.k} of {self.layers}>"

    @property
    def features(self) -> np.ndarray:
        """(N, D) features (float32 or float16)."""
        return self._rows["features"]

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 class indices, -1 where an item has none."""
        return self._rows["labels"]

    @property
    def predictions(self) -> np.ndarray | None:
        """(N,) int64 argmax of the model's class scores; None where it gives none."""
        return self._rows.get("predictions")

    @property
    def confidences(self) -> np.ndarray | None:
        """(N,) float32 softmax probability of the prediction; None likewise."""
        return self._rows.get("confidences")

    @property
    def thumbnails(self) -> np.ndarray | None:
        """(N, h, w[, 3]) uint8 thumbnails, where the job made them."""
        return self._rows.get("thumbnails")

    @property
    def layers(self) -> list[str]:
        """The layers whose per-channel top-k the store keeps."""
        return list(self.manifest["top"])

    @property
    def k(self) -> int:
        return self.manifest["job"]["k"]

    @property
    def classes(self) -> list[str] | None:
        return self.manifest["data"]["classes"]

    @property
    def model_fingerprint(self) -> str:
        return self.manifest["model"]["fingerprint"]

    @property
    def data_fingerprint(self) -> str:
        return self.manifest["data"]["fingerprint"]

    @cached_property
    def fields(self) -> dict[str, ReceptiveField]:
        """The receptive field of each top-k layer's units."""
        return {name: field_from(e["field"]) for name, e in self.manifest["top"].items()}

    def has_top(self, layer: str, k: int | None = None, distinct: bool = True) -> bool:
        """Whether the store holds `layer`'s top-k (at least `k` per channel, `distinct`
        images or not, as `top_activations`)."""
        entry = self.manifest["top"].get(layer)
        return entry is not None and entry["distinct"] == distinct and (k or 0) <= self.k

    def top(self, layer: str, k: int | None = None) -> TopActivations:
        """`layer`'s per-channel top-k (the first `k` of them) as `top_activations` gives it
        (its patches need the dataset: open the store with `dataset=`)."""
        if k is not None and k < self.k:
            top = self.top(layer)
            rows = {n: getattr(top, n)[:, :k] for n in ("values", "indices", "ys", "xs", "labels")}
            return dataclasses.replace(top, **rows)
        if layer not in self.manifest["top"]:
            raise KeyError(f"The store has no top-k of {layer!r}; it has: {self.layers}")
        if layer not in self._tops:
            entry = self.manifest["top"][layer]
            folder = self.path / entry["folder"]
            arrays = {
                name: np.load(folder / f"{name}.npy")
                for name in ("values", "indices", "ys", "xs", "labels")
            }
            self._tops[layer] = TopActivations(
                layer=layer,
                field=self.fields[layer],
                distinct=entry["distinct"],
                dataset=self.dataset,
                display=self.display,
                **arrays,
            )
        return self._tops[layer]

    def top_activations(self) -> dict[str, TopActivations]:
        """{layer: TopActivations} of every layer, as `top_activations(model, data, layers)`."""
        return {layer: self.top(layer) for layer in self.layers}

    def as_features(self) -> Features:
        """The rows as the `Features` that `feature_pass` gives (memory-mapped)."""
        entry = self.manifest["features"]
        return Features(
            layer=entry["layer"],
            features=self.features,
            labels=self.labels,
            predictions=self.predictions,
            confidences=self.confidences,
            from_input=entry["from_input"],
            pooled=entry["pooled"],
        )


def as_store(store: Any, model: Any = None, dataset: Any = None, display: Any = None):
    """What a widget's `store=` is: None; a path, opened by `open_store`; or a `Store`, checked
    the same way. The result crops its patches from `dataset` (with `display`)."""
    if store is None:
        return None
    if not isinstance(store, Store):
        return open_store(store, model, dataset, display=display)
    if model is not None:
        check_model(store.path, store.manifest, model)
    if dataset is not None:
        check_data(store.path, store.manifest, dataset)
    return Store(store.path, store.manifest, dataset, display)


def open_store(
    path: str | Path, model: Any = None, dataset: Any = None, *, display: Any = None
) -> Store:
    """Open the store a batch job wrote at `path`, lazily (memory maps).

    With `model` and/or `dataset`, check they are the ones the store was made with (weights
    and data fingerprints), raising `StoreMismatchError` naming both fingerprints otherwise.
    `dataset` (and `display`, index -> uint8 image) are what `store.top(layer)` crops from.
    """
    path = Path(path)
    manifest = read_manifest(path)
    if manifest is None:
        raise FileNotFoundError(f"No store at {path}: it has no manifest.json")
    if not manifest.get("complete"):
        raise ValueError(
            f"The store at {path} is not complete: its job stopped before the end. Run it again "
            "with the same arguments (run_batch or cnnviz-batch): it computes only the blocks "
            "that are missing"
        )
    if model is not None:
        check_model(path, manifest, model)
    if dataset is not None:
        check_data(path, manifest, dataset)
    return Store(path, manifest, dataset, display)
