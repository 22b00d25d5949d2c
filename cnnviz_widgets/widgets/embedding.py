"""EmbeddingExplorer: the dataset as points of a 2-D map of the model's features."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import traitlets
from torch import nn

from .. import export, render
from ..batch.store import as_store
from ..inspect.dataset import (
    CachedJob,
    Features,
    PixelConsumer,
    check_dataset,
    checked_classes,
    class_names,
    dataset_length,
    display_image,
    feature_source,
    features_from,
    shows_tensors,
)
from ..inspect.embedding import METRICS, MIN_TSNE_POINTS, embed, grid_layout, neighbours
from ..inspect.features import feature_pass
from ..inspect.inputs import check_positive
from ..inspect.predict import bound_model
from ..inspect.regions import find_regions
from ..inspect.wrappers import unwrap
from ._codec import Array
from ._job import JobWidget
from ._owner import Now, Superseded, Ticket
from ._progress import pass_batch_size
from ._tiles import bundle

#: seconds into the pass before the first preview map, and at least between two
PREVIEW_FIRST_S = 1.0
PREVIEW_EVERY_S = 2.0
COLOR_SOURCES = ("auto", "label", "prediction")


def point_classes(
    labels: np.ndarray, predictions: np.ndarray, color_by: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Each point's colour class (-1: none, gray) and whether that is its predicted class:
    "auto" the label where known, else the prediction; "label" or "prediction" only that."""
    labels = np.asarray(labels).reshape(-1)
    predictions = np.asarray(predictions).reshape(-1)[: len(labels)]
    predictions = np.pad(predictions, (0, len(labels) - len(predictions)), constant_values=-1)
    if color_by == "label":
        return labels.copy(), np.zeros(len(labels), bool)
    use = (labels < 0) | (color_by == "prediction")
    predicted = use & (predictions >= 0)
    return np.where(use, predictions, labels), predicted


#: above this many images the map has no thumbnails: their sprite sheets would hold them all
#: (tiles of the region in view are what a million images need; not built yet)
MAX_THUMBNAILS = 100_000


def _check_options(n: int, *, k: int, thumb_px: int, metric: str, method: str) -> None:
    """Refuse, before any work, what the map of `n` images could not be made with."""
    check_positive("k", k)
    check_positive("thumb_px", thumb_px)
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; metrics are: {', '.join(METRICS)}")
    if method == "tsne" and n < MIN_TSNE_POINTS:
        raise ValueError(
            f"t-SNE needs at least {MIN_TSNE_POINTS} points; the dataset has {n}. Use method='pca'"
        )


class EmbeddingExplorer(JobWidget):
    """Every image of `dataset` as a point of the t-SNE (or PCA) map of the model's features.

    One pass over the dataset gives the features, labels, predictions and confidences; `embed`
    reduces them to 2-D. The features are the penultimate ones by default: the input of the
    model's last nn.Linear, or, where it has none (a 1x1-conv classifier before global pooling,
    as in SqueezeNet), of its last nn.Conv2d, global-average-pooled; or any `layer`'s output, a
    spatial map global-average-pooled. `feature_layer` names the layer, the caption says which
    (`input of fc`, `conv3, average-pooled`). The view shows the pass's progress, a PCA map
    as soon as the features are in, and the t-SNE map moving to its final layout as it is
    optimised. The widget returns at once and all of that runs on the model's background
    thread (`wait()` blocks until the map is final; `features` and `xy` are None until then);
    `background=False` computes it before returning. `progress` is kept for compatibility:
    the view shows the progress.
    Points are coloured by their label, or by the model's predicted class where there is no
    label (`color_by`; `model_classes` names the model's outputs when they are not `classes`,
    see `_class_space`); click the legend to hide a class; hover shows the image;
    a click sets `selected_index`, whose `k` nearest neighbours in feature space are shown;
    lasso selection fills `selected_indices`. `show_thumbnails`, `arrangement="grid"` and
    `highlight_misclassified` change how the map is drawn. `show_regions` names the map's
    regions (`inspect/regions.py`: its density clusters, each named by its commonest predicted
    classes, found once the map is final) on the map: a click on a name selects its points.

    Labels: integers, whole-number floats, one-hot or probability rows (by their argmax), or
    strings, mapped to their index in `classes` (a list, or a dict {index: name}; see
    `inspect.dataset.read_labels`). Predictions: the argmax of the class scores `class_scores=`
    picks from what the model returns (an int index of a tuple, a str key or attribute, a
    callable; by default a tensor as it is and an object's `.logits`, and none for a tuple or a
    dict: see `inspect.predict.pick_scores`). `forward_args`: the model's further inputs after
    the image, held fixed. `store`: a batch job's store (its folder, or `open_store`'s result;
    see `cnnviz_widgets.batch`), checked against the model and the dataset: the features,
    labels, predictions and thumbnails are read from it (memory-mapped), not computed.
    """

    _esm = bundle("embedding_explorer.js")

    #: each point's place on the map (N, 2), in [-1, 1]
    points = Array("float32", 2)
    #: how many points the finished map has (the view picks its drawing mode from it at once,
    #: while `points` still holds a preview, or nothing)
    n_points = traitlets.Int(0).tag(sync=True)
    grid_points = Array("float32", 2)
    # not `layout`: DOMWidget's `layout` is the ipywidgets Layout every view relies on
    arrangement = traitlets.Enum(["scatter", "grid"], "scatter").tag(sync=True)
    labels = Array("int32")
    predictions = Array("int32")
    confidences = Array("float32")
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
    selected_indices = Array("int32")
    neighbours = Array("int32")
    neighbour_distances = Array("float32")
    method = traitlets.Enum(["tsne", "pca"], "tsne").tag(sync=True)
    #: what colours a point (see `point_classes`)
    color_by = traitlets.Enum(COLOR_SOURCES, "auto").tag(sync=True)
    show_regions = traitlets.Bool(False).tag(sync=True)
    #: the final map's regions, largest first: name, size, classes ([class, share], ...),
    #: n_classes, typical (index), medoid (index, where the name is drawn), x, y (its position)
    regions = traitlets.List(traitlets.Dict()).tag(sync=True)
    #: int32 (N): each point's region (index into `regions`), -1 none
    point_regions = Array("int32")
    caption = traitlets.Unicode("").tag(sync=True)
    view_px = traitlets.Int(480).tag(sync=True)
    _unfinished = "the map was not finished"

    def __init__(
        self,
        model: nn.Module,
        dataset,
        classes: Sequence[str] | None = None,
        *,
        model_classes: Sequence[str] | None = None,
        layer: str | nn.Module | None = None,
        method: str = "tsne",
        k: int = 8,
        metric: str = "euclidean",
        batch_size: int | None = None,
        device=None,
        random_state: int = 0,
        thumb_px: int = 32,
        display: Callable[[int], np.ndarray] | None = None,
        progress: bool = True,
        features: Callable[..., Features] | None = None,
        start: bool = True,
        background: bool = True,
        class_scores=None,
        forward_args: Sequence = (),
        store=None,
        **kwargs,
    ):
        check_dataset(dataset, "EmbeddingExplorer")
        #: the batch job's store the features are read from (`batch.as_store`), or None
        self.store = as_store(store, model, dataset, display)
        model = unwrap(model)  # torch.compile, DataParallel: the module inside (wrappers.py)
        model = bound_model(model, forward_args)  # the image alone in
        _check_options(len(dataset), k=k, thumb_px=thumb_px, metric=metric, method=method)
        batch_size = pass_batch_size(model, device, batch_size)
        self._dataset = dataset
        self._display = display
        self._thumb_px = thumb_px
        self.k = k
        self.metric = metric
        self.random_state = random_state
        #: the pass's result (None until the background pass is done; `wait()` for it)
        self.features: Features | None = None
        #: the finished 2-D map (None until done)
        self.xy: np.ndarray | None = None
        self._use_model(model, "embedding", background)
        names = checked_classes(classes, dataset, "EmbeddingExplorer")
        #: the layer the features come from (the caption says whether its input or output)
        wanted = features_from(model, layer)  # checked before any work
        self.feature_layer = wanted[0]
        if features is None and self.store is not None:
            features = self._stored_features(wanted)
        elif features is None:

            def features(report, preview, extra):
                return feature_pass(
                    model, dataset, layer, batch_size=batch_size, device=device,
                    progress=report, preview=preview, extra=extra, class_scores=class_scores,
                    classes=names or None,
                )  # fmt: skip

        self._features_fn = features
        self._names_given = names
        self._model_names = class_names(model_classes, "model_classes") or []
        self._final_xy: np.ndarray | None = None  # the final map, once shown
        self._regions_xy: np.ndarray | None = None  # the map whose regions are in (or coming)
        names, _ = self._class_space(0)
        super().__init__(
            method=method,
            class_names=names,
            class_colors=render.class_colors(len(names)),
            caption=f"{len(dataset):,} images",
            n_points=dataset_length(dataset),
            running=True,
            progress=0.0,
            status="reading the dataset…",
            **kwargs,
        )
        self.observe(self._on_method, names=["method"])
        self.observe(self._show_neighbours, names=["selected_index"])
        self.observe(self._want_regions, names=["show_regions"])
        if start:  # else the owner calls `_submit()` when it is ready (CNNExplorer)
            self._submit()

    def _stored_features(self, wanted: tuple[str, bool]) -> Callable[..., Features]:
        """The features function of a store: its rows, memory-mapped (no pass), if they are the
        `wanted` ones ((layer, from its input), as `features_from`)."""
        entry = self.store.manifest["features"]
        stored = (entry["layer"], entry["from_input"])
        if stored != tuple(wanted):
            fix = "leave layer= at its default" if stored[1] else f"pass layer={stored[0]!r}"
            raise ValueError(
                f"The store at {self.store.path} holds the features of "
                f"{feature_source(*stored, pooled=False)}, not of {self.feature_layer!r}: {fix}, "
                "or run the batch job with this feature_layer"
            )
        return lambda report, preview, extra: self.store.as_features()

    def _submit(self) -> None:
        self._submit_job(self._job)  # without `background` the view still shows its progress

    def __len__(self) -> int:
        return dataset_length(self._dataset)

    # ------------------------------------------------------------------ background work

    def _job(self, ticket: Ticket | Now) -> None:
        """The dataset pass (skipped once done), then the map: PCA at once, then the t-SNE
        (animated) as the next job of this lane. Runs on the model's thread (or here, without
        `background`); what it shows goes through `post`, so traits change on the kernel's
        thread only."""

        def work(post) -> None:
            fresh = self.features is None
            if fresh:
                report = self._pass_progress(ticket, post)
                thumbs, extra = self._thumbnail_job()
                self._take(self._features_fn(report, self._previewer(post), extra), post, thumbs)
            self._embed(ticket, post, pca_first=fresh or not self.points.size)

        self._guarded(ticket, work)

    def _previewer(self, post) -> Callable[[Callable[[], Features]], None]:
        """The pass's `preview`: every few seconds (and at most a tenth of the time), the PCA
        map of the images read so far, so points can be seen and clicked during the pass."""
        next_at = time.perf_counter() + PREVIEW_FIRST_S

        def preview(rows: Callable[[], Features]) -> None:
            nonlocal next_at
            start = time.perf_counter()
            if start < next_at:
                return
            part = rows()
            n = len(part.labels)
            if n >= 3:
                try:
                    traits = self._class_traits(part)
                except ValueError:  # labels beyond the names: the whole pass will say so
                    return
                total = f"{len(self):,}"
                traits["caption"] = f"{n:,} of {total} images so far · PCA (t-SNE when all are in)"
                traits["points"] = render.unit_square(embed(part.features, method="pca"))
                post(lambda: self._set(**traits))
            next_at = time.perf_counter() + max(PREVIEW_EVERY_S, 10 * (time.perf_counter() - start))

        return preview

    def _class_space(self, n_classes: int) -> tuple[list[str], np.ndarray | None]:
        """The classes points are coloured by: the label names (`classes`, else `model_classes`,
        else "class i"), then the model's class names not among them; and where the model's
        outputs go in that list (None: the same indices). A prediction and a label with the
        same name share a class, and so a colour."""
        given, model = self._names_given, self._model_names
        names = given or model or [f"class {i}" for i in range(n_classes)]
        if not model or model == names:
            return names, None
        names = names + [m for m in dict.fromkeys(model) if m not in set(names)]
        first = {name: i for i, name in reversed(list(enumerate(names)))}
        return names, np.array([first[m] for m in model], np.int64)

    def _predicted(self, feats: Features) -> np.ndarray:
        """The predicted class of each point as an index into `class_names` (-1 none)."""
        if feats.predictions is None:
            return -np.ones(len(feats.labels), np.int64)
        p = np.asarray(feats.predictions, np.int64)
        n_classes = int(p.max(initial=-1)) + 1
        _, outputs = self._class_space(max(n_classes, int(feats.labels.max(initial=-1)) + 1))
        if outputs is None:
            return p
        return np.where(p < len(outputs), outputs[np.minimum(p, len(outputs) - 1)], -1)

    def _class_traits(self, feats: Features) -> dict:
        """The traits that colour the points: class names and colours, labels, predictions."""
        labels = feats.labels
        n_classes = int(labels.max()) + 1 if len(labels) else 0
        if feats.predictions is not None:
            n_classes = max(n_classes, int(feats.predictions.max()) + 1)
        names, _ = self._class_space(n_classes)
        n_labels = len(self._names_given or self._model_names) or len(names)
        if labels.min(initial=0) < -1 or labels.max(initial=-1) >= n_labels:
            raise ValueError(
                f"labels run from {labels.min()} to {labels.max()}, but there are only "
                f"{n_labels} class names (valid labels: 0..{n_labels - 1})"
            )
        predictions = self._predicted(feats)
        confidences = (
            feats.confidences if feats.confidences is not None else np.zeros(len(labels), "f4")
        )
        return {
            "class_names": names,
            "class_colors": render.class_colors(len(names)),
            "labels": labels,
            "predictions": predictions,
            "confidences": confidences,
        }

    def _thumbnail_job(self) -> tuple[dict, tuple[CachedJob, ...]]:
        """The thumbnails as a job of the pass, where they are made from the tensors the model
        reads (no display function, no `dataset.image`): the dataset is read once, not twice.
        Returns (where its result lands, the jobs)."""
        thumbs: dict[str, np.ndarray] = {}
        if self.store is not None and self.store.thumbnails is not None:  # the batch job's
            thumbs["tiles"] = render.fit_tiles(self.store.thumbnails, self._thumb_px)
            return thumbs, ()
        if not shows_tensors(self._dataset, self._display):
            return thumbs, ()

        def keep(tiles: np.ndarray) -> np.ndarray:
            thumbs["tiles"] = tiles
            return tiles

        px = self._thumb_px
        consumer = PixelConsumer(lambda images: render.fit_tiles(images, px))
        return thumbs, (CachedJob(consumer, finish=keep, optional=True),)

    def _take(self, feats: Features, post, thumbs: dict) -> None:
        """Show what the pass found: labels, predictions, class names, thumbnails (made in the
        pass, or else read now)."""
        traits = self._class_traits(feats)
        n, d = feats.features.shape
        traits["caption"] = f"{n:,} images · {feats.source} · {d} features"
        tiles = thumbs.get("tiles")
        if n > MAX_THUMBNAILS:  # one sprite sheet of them all would not fit the browser
            traits["caption"] += f" · no thumbnails over {MAX_THUMBNAILS:,} images"
            tiles = None
        post(lambda: self._set(**traits, status="thumbnails…"))
        if tiles is None and n <= MAX_THUMBNAILS:  # a display function, `dataset.image`, or
            images = [display_image(self._dataset, i, self._display) for i in range(n)]
            tiles = render.fit_tiles(images, self._thumb_px)  # the features were cached
        sheets = {}
        if tiles is not None:
            pages, shape, cols, per_page = render.sprite_sheets(tiles)
            sheets = {"thumb_pages": pages, "thumb_shape": list(shape), "thumb_cols": cols,
                      "thumbs_per_page": per_page}  # fmt: skip
        self.features = feats

        def show() -> None:
            with self.hold_sync():
                self._set(**sheets)
                self._show_neighbours({"new": self.selected_index})

        post(show)

    def _show_map(self, xy: np.ndarray, post, **traits) -> None:
        points = render.unit_square(xy)  # a copy: t-SNE goes on in `xy`
        post(lambda: self._set(points=points, **traits))

    def _embed(self, ticket: Ticket | Now, post, pca_first: bool) -> None:
        """The PCA map here; the t-SNE, where asked for, as the next job of this lane: it
        queues behind the model's background work already waiting (the finer occlusion maps
        of the image shown during the pass), the PCA map of every image shown meanwhile."""
        x = self.features.features
        if self.method == "pca":
            post(lambda: self._set(progress=0.0, status="computing PCA…"))
            xy = embed(x, method="pca", random_state=self.random_state)
            self._finish(ticket, post, xy, "PCA")
            return
        if pca_first:  # a map of every image at once, while the t-SNE waits and runs
            self._show_map(embed(x, method="pca"), post, status="t-SNE next…", progress=0.0)
        else:  # the map shown stays until the t-SNE moves it
            post(lambda: self._set(progress=0.0, status="t-SNE next…"))
        ticket.then(lambda t: self._guarded(t, lambda post: self._tsne(t, post)))

    def _tsne(self, ticket: Ticket | Now, post) -> None:
        post(lambda: self._set(progress=0.0, status="computing t-SNE…"))

        def step(current: np.ndarray, iteration: int, iterations: int) -> None:
            if not ticket():
                raise Superseded
            self._owner.background_turn(ticket)  # a click on the model goes first
            self._show_map(
                current,
                post,
                progress=iteration / iterations,
                status=f"t-SNE · iteration {iteration} of {iterations}",
            )

        x = self.features.features
        xy = embed(x, method="tsne", random_state=self.random_state, callback=step)
        self._finish(ticket, post, xy, "t-SNE")

    def _finish(self, ticket: Ticket | Now, post, xy: np.ndarray, what: str) -> None:
        if not ticket():
            raise Superseded
        self.xy = xy
        grid = render.unit_square(grid_layout(xy))
        self._show_map(
            xy, post, grid_points=grid, running=False, progress=1.0, status=f"{what} map"
        )

        def final() -> None:
            self._final_xy = xy
            self._want_regions()

        post(final)

    # ------------------------------------------------------------------ regions

    def _region_traits(self, xy: np.ndarray) -> dict:
        """`regions` and `point_regions` of map `xy`, named by the predicted classes (by the
        labels where the model gives no predictions)."""
        feats = self.features
        classes = feats.labels if feats.predictions is None else self._predicted(feats)
        names, _ = self._class_space(int(classes.max(initial=-1)) + 1)
        points = render.unit_square(xy)
        found, member = find_regions(points, classes, names, random_state=self.random_state)
        regions = [
            {
                "name": r.name,
                "size": len(r.indices),
                "classes": [[c, round(share, 4)] for c, share in r.classes],
                "n_classes": r.n_classes,
                "typical": r.typical,
                "medoid": r.medoid,
                "x": r.position[0],
                "y": r.position[1],
            }
            for r in found
        ]
        return {"regions": regions, "point_regions": member}

    def _want_regions(self, change=None) -> None:
        """Find the final map's regions (once) when `show_regions` asks for them: a job of the
        widget's lane, or here without `background`."""
        xy = self._final_xy
        if not self.show_regions or xy is None or self._regions_xy is xy:
            return
        self._regions_xy = xy

        def work(post) -> None:
            status = self.status
            post(lambda: self._set(status=f"{status} · finding regions…"))
            found = self._region_traits(xy)

            def show() -> None:
                if self._final_xy is xy:
                    self._set(**found, status=status)

            post(show)

        self._submit_job(lambda ticket: self._guarded(ticket, work))

    def region_indices(self, region: int) -> np.ndarray:
        """The dataset indices of region `region` (see `regions`), ascending."""
        return np.flatnonzero(self.point_regions == region)

    @property
    def point_colors(self) -> tuple[np.ndarray, np.ndarray]:
        """Each point's colour class (index into `class_names`, -1 gray) and whether that is its
        predicted class, as the view draws them."""
        return point_classes(self.labels, self.predictions, self.color_by)

    def _on_method(self, change=None) -> None:
        self._begin(regions=[], point_regions=[])
        self._final_xy = self._regions_xy = None
        self._submit()

    @traitlets.validate("selected_index")
    def _valid_index(self, proposal):
        i = proposal["value"]
        if not -1 <= i < len(self):
            raise traitlets.TraitError(f"selected_index {i} is out of range -1..{len(self) - 1}")
        return i

    def _show_neighbours(self, change) -> None:
        i = change["new"]
        if i < 0 or self.features is None:  # none yet: shown when the pass is done
            idx, dist = np.zeros(0, np.int64), np.zeros(0, np.float32)
        else:
            k = min(self.k, len(self) - 1)
            idx, dist = neighbours(self.features.features, k, self.metric, query=i)
            idx, dist = idx[0], dist[0]
        with self.hold_sync():
            self.neighbours = idx
            self.neighbour_distances = dist

    @property
    def selection(self) -> np.ndarray:
        """The dataset indices of the lasso selection."""
        return self.selected_indices.copy()

    @property
    def neighbour_indices(self) -> np.ndarray:
        """The selected image's nearest neighbours in feature space, nearest first."""
        return self.neighbours.copy()

    def _png_image(self) -> np.ndarray:
        """The map: points coloured by class, `view_px` square."""
        return export.embedding_image(self)
