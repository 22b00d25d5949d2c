"""EmbeddingExplorer: the dataset as points of a 2-D map of the model's features."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anywidget
import numpy as np
import traitlets
from torch import nn

from .. import export, render
from ..inspect.dataset import check_dataset, display_image
from ..inspect.embedding import METRICS, embed, grid_layout, neighbours
from ..inspect.features import feature_pass
from ..inspect.inputs import check_positive
from ._tiles import bundle


def _binary_from_json(value, widget):
    """Bytes sent back by the browser arrive as a memoryview."""
    return bytes(value) if value is not None else b""


class EmbeddingExplorer(anywidget.AnyWidget):
    """Every image of `dataset` as a point of the t-SNE (or PCA) map of the model's features.

    One pass over the dataset gives the features (the penultimate layer by default, or any
    `layer`, spatially averaged), labels, predictions and confidences; `embed` reduces them to
    2-D. Points are coloured by class (click the legend to hide one); hover shows the image;
    a click sets `selected_index`, whose `k` nearest neighbours in feature space are shown;
    lasso selection fills `selected_indices`. `show_thumbnails`, `arrangement="grid"` and
    `highlight_misclassified` change how the map is drawn.
    """

    _esm = bundle("embedding_explorer.js")

    points = traitlets.Bytes(b"").tag(sync=True)
    grid_points = traitlets.Bytes(b"").tag(sync=True)
    # not `layout`: DOMWidget's `layout` is the ipywidgets Layout every view relies on
    arrangement = traitlets.Enum(["scatter", "grid"], "scatter").tag(sync=True)
    labels = traitlets.Bytes(b"").tag(sync=True)
    predictions = traitlets.Bytes(b"").tag(sync=True)
    confidences = traitlets.Bytes(b"").tag(sync=True)
    class_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    class_colors = traitlets.List(traitlets.Unicode()).tag(sync=True)
    hidden_classes = traitlets.List(traitlets.Int()).tag(sync=True)
    highlight_misclassified = traitlets.Bool(False).tag(sync=True)
    thumb_pages = traitlets.List(traitlets.Bytes()).tag(sync=True)
    thumb_shape = traitlets.List(traitlets.Int(), [0, 0]).tag(sync=True)
    thumb_cols = traitlets.Int(1).tag(sync=True)
    thumbs_per_page = traitlets.Int(1).tag(sync=True)
    show_thumbnails = traitlets.Bool(False).tag(sync=True)
    selected_index = traitlets.Int(-1).tag(sync=True)
    selected_indices = traitlets.Bytes(b"").tag(sync=True, from_json=_binary_from_json)
    neighbours = traitlets.Bytes(b"").tag(sync=True)
    neighbour_distances = traitlets.Bytes(b"").tag(sync=True)
    method = traitlets.Enum(["tsne", "pca"], "tsne").tag(sync=True)
    caption = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    progress = traitlets.Float(1.0).tag(sync=True)
    running = traitlets.Bool(False).tag(sync=True)
    view_px = traitlets.Int(480).tag(sync=True)

    def __init__(
        self,
        model: nn.Module,
        dataset,
        classes: Sequence[str] | None = None,
        *,
        layer: str | nn.Module | None = None,
        method: str = "tsne",
        k: int = 8,
        metric: str = "euclidean",
        batch_size: int = 256,
        device=None,
        random_state: int = 0,
        thumb_px: int = 32,
        display: Callable[[int], np.ndarray] | None = None,
        progress: bool = True,
        **kwargs,
    ):
        check_dataset(dataset, "EmbeddingExplorer")
        check_positive("k", k)
        check_positive("thumb_px", thumb_px)
        if metric not in METRICS:
            raise ValueError(f"Unknown metric {metric!r}; metrics are: {', '.join(METRICS)}")
        self._dataset = dataset
        self._display = display
        self.k = k
        self.metric = metric
        self.random_state = random_state
        feats = feature_pass(
            model, dataset, layer, batch_size=batch_size, device=device, progress=progress
        )
        self.features = feats
        labels = feats.labels
        n_classes = int(labels.max()) + 1 if len(labels) else 0
        if feats.predictions is not None:
            n_classes = max(n_classes, int(feats.predictions.max()) + 1)
        names = list(classes) if classes is not None else list(getattr(dataset, "classes", []))
        names = names or [f"class {i}" for i in range(n_classes)]
        if labels.min(initial=0) < -1 or labels.max(initial=-1) >= len(names):
            raise ValueError(
                f"labels run from {labels.min()} to {labels.max()}, but there are only "
                f"{len(names)} class names (valid labels: 0..{len(names) - 1})"
            )
        predictions = feats.predictions if feats.predictions is not None else -np.ones_like(labels)
        confidences = (
            feats.confidences if feats.confidences is not None else np.zeros(len(labels), "f4")
        )
        what = f"input of {feats.layer}" if layer is None else feats.layer
        super().__init__(
            method=method,
            class_names=[str(c) for c in names],
            class_colors=render.class_colors(len(names)),
            labels=labels.astype("<i4").tobytes(),
            predictions=predictions.astype("<i4").tobytes(),
            confidences=confidences.astype("<f4").tobytes(),
            caption=f"{len(labels)} images · {what} · {feats.features.shape[1]} features",
            **kwargs,
        )
        self._thumbnails(thumb_px)
        self._embed()
        self.observe(self._embed, names=["method"])
        self.observe(self._show_neighbours, names=["selected_index"])

    def _thumbnails(self, thumb_px: int) -> None:
        images = [display_image(self._dataset, i, self._display) for i in range(len(self))]
        pages, shape, cols, per_page = render.sprite_pages(images, thumb_px)
        with self.hold_sync():
            self.thumb_pages, self.thumb_shape = pages, list(shape)
            self.thumb_cols, self.thumbs_per_page = cols, per_page

    def __len__(self) -> int:
        return len(self.features.labels)

    def _embed(self, change=None) -> None:
        with self.hold_sync():
            self.running, self.progress, self.status = True, 0.0, f"computing {self.method}…"
        self.xy = embed(self.features.features, method=self.method, random_state=self.random_state)
        with self.hold_sync():
            self.points = render.unit_square(self.xy).tobytes()
            self.grid_points = render.unit_square(grid_layout(self.xy)).tobytes()
            self.running, self.progress = False, 1.0
            self.status = f"{self.method.upper() if self.method == 'pca' else 't-SNE'} map"

    @traitlets.validate("selected_index")
    def _valid_index(self, proposal):
        i = proposal["value"]
        if not -1 <= i < len(self):
            raise traitlets.TraitError(f"selected_index {i} is out of range -1..{len(self) - 1}")
        return i

    def _show_neighbours(self, change) -> None:
        i = change["new"]
        if i < 0:
            idx, dist = np.zeros(0, np.int64), np.zeros(0, np.float32)
        else:
            k = min(self.k, len(self) - 1)
            idx, dist = neighbours(self.features.features, k, self.metric, query=i)
            idx, dist = idx[0], dist[0]
        with self.hold_sync():
            self.neighbours = idx.astype("<i4").tobytes()
            self.neighbour_distances = dist.astype("<f4").tobytes()

    @property
    def selection(self) -> np.ndarray:
        """The dataset indices of the lasso selection."""
        return np.frombuffer(self.selected_indices, "<i4").copy()

    @property
    def neighbour_indices(self) -> np.ndarray:
        """The selected image's nearest neighbours in feature space, nearest first."""
        return np.frombuffer(self.neighbours, "<i4").copy()

    def to_html(self, path=None, *, title=None) -> str:
        """This view as one self-contained HTML page (see `cnnviz_widgets.export.to_html`)."""
        return export.to_html(self, path, title=title)

    def save_png(self, path) -> None:
        """Save the map (points coloured by class, `view_px` square) as a PNG file."""
        export.write_png(export.embedding_image(self), path)
