"""bqplot building blocks for notebooks that lay out their own ipywidgets dashboards."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from torch import nn

from .. import render
from ..inspect.dataset import class_names
from ..inspect.predict import class_probabilities, top_k


def embedding_figure(xy, labels, classes: Sequence[str] | None = None, *, title: str = ""):
    """A bqplot scatter of a 2-D map, one colour per class; clicking points selects them.

    The selection is the scatter's `selected` trait (`figure.marks[0].selected`, dataset
    indices); `link_selection` turns it into the image a view shows.
    """
    import bqplot as bq

    xy = np.asarray(xy, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(labels):
        raise ValueError(
            f"Expected xy of shape (N, 2) and N labels; got xy {xy.shape} and {labels.shape[0]} "
            "labels"
        )
    n = int(labels.max()) + 1 if len(labels) else 0
    names = list(classes) if classes is not None else [str(i) for i in range(n)]
    if n > len(names):
        raise ValueError(f"labels run to {n - 1}, but there are only {len(names)} class names")
    colors = render.class_colors(len(names))
    scales = {
        "x": bq.LinearScale(),
        "y": bq.LinearScale(),
        "color": bq.OrdinalColorScale(colors=colors, domain=list(range(len(names)))),
    }
    scatter = bq.Scatter(
        x=xy[:, 0],
        y=xy[:, 1],
        color=labels,
        scales=scales,
        default_size=12,
        stroke="transparent",
        interactions={"click": "select", "hover": "tooltip"},
        selected_style={"opacity": 1.0, "stroke": "black", "stroke-width": 2},
        unselected_style={"opacity": 0.35},
        tooltip=bq.Tooltip(fields=["color"], labels=["class"]),
        names=[names[i] for i in labels],
        display_names=False,
    )
    axes = [
        bq.Axis(scale=scales["x"], side="bottom", visible=False),
        bq.Axis(scale=scales["y"], side="left", visible=False),
    ]
    return bq.Figure(
        marks=[scatter], axes=axes, title=title, min_aspect_ratio=1, max_aspect_ratio=1
    )


def link_selection(figure, view, dataset) -> Callable[[dict], None]:
    """Show `dataset[i]`'s image in `view` (a FeatureMaps or OcclusionMap) when point i of
    `figure` (from `embedding_figure`) is selected. Returns the observer, to unobserve it."""
    scatter = figure.marks[0]

    def show(change: dict) -> None:
        selected = change["new"]
        if selected is not None and len(selected):
            view.image = dataset[int(selected[0])][0]

    scatter.observe(show, names=["selected"])
    return show


def class_probabilities_figure(
    model: nn.Module,
    image,
    classes: Sequence[str] | None = None,
    *,
    k: int = 5,
    transform: Callable | None = None,
    device=None,
    class_scores=None,
    forward_args: Sequence = (),
):
    """A bqplot bar chart of the model's k most probable classes for one image (`class_scores`,
    `forward_args`: see `inspect.predict.class_probabilities`)."""
    import bqplot as bq

    probs = class_probabilities(
        model,
        image,
        device=device,
        transform=transform,
        forward_args=forward_args,
        class_scores=class_scores,
    )
    names = class_names(classes) or [f"class {i}" for i in range(len(probs))]
    if len(names) != len(probs):
        raise ValueError(f"classes has {len(names)} names; the model scores {len(probs)}")
    top = top_k(probs, k)
    x_sc, y_sc = bq.OrdinalScale(), bq.LinearScale(min=0.0, max=1.0)
    bars = bq.Bars(
        x=[names[i] for i, _ in top],
        y=[p for _, p in top],
        scales={"x": x_sc, "y": y_sc},
        colors=[render.class_colors(len(names))[top[0][0]]],
    )
    axes = [
        bq.Axis(scale=x_sc, side="bottom", label="class"),
        bq.Axis(scale=y_sc, side="left", label="probability", tick_format=".2f"),
    ]
    return bq.Figure(marks=[bars], axes=axes, title=f"top {len(top)} classes")
