"""bqplot building blocks: what they plot, and the selection link driving a view."""

import numpy as np
import torch

from cnnviz_widgets import (
    FeatureMaps,
    class_probabilities_figure,
    embedding_figure,
    link_selection,
    render,
)


def test_embedding_figure_plots_the_map_coloured_by_class(demo):
    _, dataset, classes = demo
    xy = np.random.default_rng(0).normal(size=(len(dataset), 2)).astype(np.float32)
    fig = embedding_figure(xy, dataset.targets, classes)
    scatter = fig.marks[0]
    np.testing.assert_array_equal(scatter.x, xy[:, 0])
    np.testing.assert_array_equal(scatter.y, xy[:, 1])
    np.testing.assert_array_equal(scatter.color, dataset.targets)
    assert scatter.scales["color"].colors == render.class_colors(10)


def test_selecting_a_point_shows_that_image(demo):
    model, dataset, classes = demo
    fig = embedding_figure(np.zeros((len(dataset), 2)), dataset.targets, classes)
    maps = FeatureMaps(model, dataset[0][0], layer="conv2")
    before = maps.atlas_png
    link_selection(fig, maps, dataset)
    fig.marks[0].selected = [42]
    assert torch.equal(maps.image, dataset[42][0])
    assert maps.atlas_png != before
    fig.marks[0].selected = None  # a cleared selection leaves the view as it is
    assert torch.equal(maps.image, dataset[42][0])


def test_class_probabilities_figure_shows_the_top_classes(demo):
    model, dataset, classes = demo
    x = dataset[7][0]
    with torch.no_grad():
        probs = torch.softmax(model(x[None]), dim=1)[0]
    top = torch.topk(probs, 3)
    bars = class_probabilities_figure(model, x, classes, k=3).marks[0]
    assert list(bars.x) == [classes[i] for i in top.indices]
    np.testing.assert_allclose(bars.y, top.values.numpy(), rtol=1e-5)
