"""The one-pass per-channel top-k equals a brute-force scan; patches, shared passes, errors."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from cnnviz_widgets.inspect import ActivationCapture
from cnnviz_widgets.inspect.dataset import (
    FeatureConsumer,
    TopActivations,
    TopKConsumer,
    dataset_pass,
    top_activations,
    topk_lexicographic,
)
from cnnviz_widgets.inspect.receptive import receptive_field


def all_activations(model, dataset, layers, batch_size):
    """Every activation of `layers`, batch by batch as the pass runs them (bitwise alike)."""
    parts = {name: [] for name in layers}
    with ActivationCapture(model, layers) as cap:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            out = cap(torch.stack([x for x, _ in items]))
            for name in layers:
                parts[name].append(out[name])
    return {name: torch.cat(p).numpy() for name, p in parts.items()}


def brute_force(acts: np.ndarray, k: int, distinct: bool):
    """(values, indices, ys, xs) per channel, ordered by value desc, index asc, position asc."""
    n, c, h, w = acts.shape
    flat = acts.reshape(n, c, h * w)
    result = []
    for ch in range(c):
        if distinct:
            pos = flat[:, ch].argmax(axis=1)  # numpy: the first maximum
            vals = flat[np.arange(n), ch, pos]
            order = np.lexsort((np.arange(n), -vals))[:k]
            idx, p = order, pos[order]
            v = vals[order]
        else:
            vals = flat[:, ch].reshape(-1)  # (index, position) order
            order = np.lexsort((np.arange(vals.size), -vals))[:k]
            idx, p, v = order // (h * w), order % (h * w), vals[order]
        result.append((v, idx, p // w, p % w))
    return [np.stack(x) for x in zip(*result, strict=True)]


def assert_equals_brute_force(top: TopActivations, acts, k, distinct, labels=None):
    values, indices, ys, xs = brute_force(acts, k, distinct)
    np.testing.assert_array_equal(top.values, values.astype(np.float32))
    np.testing.assert_array_equal(top.indices, indices)
    np.testing.assert_array_equal(top.ys, ys)
    np.testing.assert_array_equal(top.xs, xs)
    if labels is not None:
        np.testing.assert_array_equal(top.labels, labels[indices])


@pytest.mark.parametrize("distinct", [True, False])
def test_topk_equals_brute_force_on_the_demo(demo, distinct):
    model, dataset, _ = demo
    layers, k, bs = ["conv2", "relu3"], 9 if distinct else 12, 64
    top = top_activations(
        model, dataset, layers, k, batch_size=bs, progress=False, distinct=distinct, cache=False
    )
    acts = all_activations(model, dataset, layers, bs)
    for name in layers:
        assert top[name].values.dtype == np.float32
        assert top[name].values.shape == (acts[name].shape[1], k)
        assert_equals_brute_force(top[name], acts[name], k, distinct, dataset.targets)
    assert (acts["relu3"] == 0).all(axis=(0, 2, 3)).any(), "a dead channel: all ties at 0"
    if distinct:
        for name in layers:  # each image at most once per channel
            assert all(len(set(row)) == k for row in top[name].indices)


class IntegerNet(nn.Module):
    """Small integer weights on small integer images: exact arithmetic and many ties."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 3, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randint(-1, 2, self.conv.weight.shape, generator=g))
            self.conv2.weight.copy_(torch.randint(-1, 2, self.conv2.weight.shape, generator=g))
        self.head = nn.Linear(3 * 3 * 3, 2)

    def forward(self, x):
        x = self.conv2(self.pool(self.relu(self.conv(x))))
        return self.head(x.flatten(1))


def integer_data(n=40, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 3, (n, 1, size, size), generator=g).float()
    labels = torch.randint(0, 2, (n,), generator=g)
    return TensorDataset(images, labels)


@pytest.mark.parametrize("distinct", [True, False])
@pytest.mark.parametrize("batch_size", [7, 40])
def test_ties_resolve_to_lower_index_then_lower_position(distinct, batch_size):
    model, data = IntegerNet().eval(), integer_data()
    layers, k = ["relu", "conv2"], 20 if distinct else 50
    top = top_activations(
        model, data, layers, k, batch_size=batch_size, progress=False, distinct=distinct
    )
    acts = all_activations(model, data, layers, batch_size)
    for name in layers:
        values = top[name].values
        assert (values[:, :-1] == values[:, 1:]).any(), "the test needs ties"
        assert_equals_brute_force(top[name], acts[name], k, distinct, data.tensors[1].numpy())


def test_topk_lexicographic_matches_a_stable_sort():
    g = torch.Generator().manual_seed(3)
    for length, k in [(1, 1), (5, 5), (50, 7), (300, 40)]:
        values = torch.randint(0, 4, (6, length), generator=g).float()
        got_v, got_i = topk_lexicographic(values, k)
        ref = values.sort(dim=1, descending=True, stable=True)
        torch.testing.assert_close(got_v, ref.values[:, :k])
        torch.testing.assert_close(got_i, ref.indices[:, :k])


def test_patch_is_the_crop_of_the_displayed_image_at_the_analytic_box(demo):
    model, dataset, _ = demo
    top = top_activations(model, dataset, ["relu3", "pool1"], 4, progress=False)
    clipped = 0
    for name, t in top.items():
        rf = receptive_field(model, name, (32, 32))
        assert t.field == rf
        for c in range(0, t.channels, 7):
            for r in range(t.k):
                i, y, x = t.indices[c, r], t.ys[c, r], t.xs[c, r]
                y0 = y * rf.stride[0] + rf.offset[0]
                x0 = x * rf.stride[1] + rf.offset[1]
                pad = max(rf.size)
                padded = np.pad(dataset.image(i), pad, constant_values=128)
                want = padded[y0 + pad : y0 + pad + rf.size[0], x0 + pad : x0 + pad + rf.size[1]]
                got = t.patch(c, r)
                assert got.dtype == np.uint8 and got.shape == rf.size
                np.testing.assert_array_equal(got, want)
                clipped += not (y0 >= 0 and y0 + rf.size[0] <= 32 and 0 <= x0 <= 32 - rf.size[1])
    assert clipped, "at least one patch crosses the border"
    with pytest.raises(IndexError, match=r"channel 64, rank 0 out of range.*0\.\.63"):
        top["relu3"].patch(64, 0)


def test_patch_of_a_colour_dataset_without_image_method():
    model = nn.Sequential(nn.Conv2d(3, 2, 3, stride=2), nn.ReLU())
    images = torch.rand(5, 3, 9, 9)
    data = TensorDataset(images, torch.arange(5))
    top = top_activations(model, data, "1", 2, progress=False)["1"]
    c, r = 1, 0
    i, y, x = top.indices[c, r], top.ys[c, r], top.xs[c, r]
    want = (images[i].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    want = want[2 * y : 2 * y + 3, 2 * x : 2 * x + 3]
    np.testing.assert_array_equal(top.patch(c, r), want)
    assert top.patch(c, r).shape == (3, 3, 3)


def test_a_dataloader_gives_the_same_result_and_a_shuffled_one_is_refused(demo):
    model, dataset, _ = demo
    direct = top_activations(model, dataset, "pool2", 5, batch_size=90, progress=False)
    loader = DataLoader(dataset, batch_size=90)
    via_loader = top_activations(model, loader, "pool2", 5, progress=False)
    np.testing.assert_array_equal(direct["pool2"].indices, via_loader["pool2"].indices)
    np.testing.assert_array_equal(direct["pool2"].values, via_loader["pool2"].values)
    with pytest.raises(ValueError, match=r"RandomSampler.*shuffle=False"):
        top_activations(model, DataLoader(dataset, shuffle=True), "pool2", 5, progress=False)


def test_one_forward_feeds_top_k_and_penultimate_features(demo):
    model, dataset, _ = demo
    calls = []
    handle = model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    try:
        topk, feats = TopKConsumer(model, ["conv3"], 6), FeatureConsumer(model)
        top, features = dataset_pass(model, dataset, [topk, feats], batch_size=128, progress=False)
    finally:
        handle.remove()
    assert calls == [128, 128, 104], "one forward per batch, shared by both consumers"
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.no_grad():
        want = model.features(x)
        logits = model(x)
    assert features.layer == "fc"  # the input of the last Linear
    np.testing.assert_allclose(features.features, want.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(features.predictions, logits.argmax(1).numpy())
    np.testing.assert_array_equal(features.labels, dataset.targets)
    np.testing.assert_allclose(
        features.confidences, logits.softmax(1).max(1).values.numpy(), rtol=1e-5
    )
    alone = top_activations(model, dataset, "conv3", 6, batch_size=128, progress=False)
    np.testing.assert_array_equal(top["conv3"].indices, alone["conv3"].indices)
    (only,) = dataset_pass(model, dataset, [FeatureConsumer(model)], progress=False)
    np.testing.assert_allclose(only.features, want.numpy(), rtol=1e-5, atol=1e-5)


def test_feature_consumer_pools_a_named_feature_map(demo):
    model, dataset, _ = demo
    (features,) = dataset_pass(model, dataset, [FeatureConsumer(model, "conv3")], progress=False)
    acts = all_activations(model, dataset, ["conv3"], 256)["conv3"]
    np.testing.assert_allclose(features.features, acts.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)


def test_model_state_is_restored(demo):
    model, dataset, _ = demo
    model.train()
    try:
        top_activations(model, dataset, "conv1", 3, progress=False, cache=False)
        assert all(m.training for m in model.modules())
        hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
        assert hooks == 0
    finally:
        model.eval()


def test_progress_bar_shows_images_per_second(demo, capsys):
    model, dataset, _ = demo
    top_activations(model, dataset, "conv1", 3, progress=True, cache=False)
    assert "img/s" in capsys.readouterr().err
    top_activations(model, dataset, "conv1", 3, progress=False, cache=False)
    assert capsys.readouterr().err == ""


def test_cache_hit_is_instant_and_weight_changes_invalidate_it(demo):
    model, dataset, _ = demo
    model = copy.deepcopy(model)
    first = top_activations(model, dataset, ["relu2"], 4, progress=False)
    t = time.perf_counter()
    again = top_activations(model, dataset, ["relu2"], 4, progress=False)
    assert time.perf_counter() - t < 0.2
    np.testing.assert_array_equal(first["relu2"].values, again["relu2"].values)
    with torch.no_grad():
        model.conv1.weight.mul_(2.0)
    changed = top_activations(model, dataset, ["relu2"], 4, progress=False)
    assert not np.array_equal(first["relu2"].values, changed["relu2"].values)


# ---------------------------------------------------------------- errors ----


def test_k_larger_than_the_dataset_names_both_numbers(demo):
    model, dataset, _ = demo
    with pytest.raises(ValueError, match=r"k=361 is larger than the dataset \(360 images\)"):
        top_activations(model, dataset, "conv1", 361, progress=False)
    one = TensorDataset(dataset[0][0][None], torch.tensor([0]))
    with pytest.raises(ValueError, match=r"k=17 is larger than the 16 positions"):
        top_activations(model, one, "pool3", 17, progress=False, distinct=False)
    with pytest.raises(ValueError, match=r"k must be a positive integer; got 0"):
        top_activations(model, dataset, "conv1", 0, progress=False)


def test_a_layer_without_spatial_output_is_refused_before_any_forward(demo):
    model, dataset, _ = demo
    calls = []
    handle = model.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with pytest.raises(ValueError, match=r"Layer 'fc' .*no spatial output.*no patches"):
            top_activations(model, dataset, ["conv1", "fc"], 3, progress=False)
    finally:
        handle.remove()
    assert calls == []
    with pytest.raises(ValueError, match=r"Unknown layer 'conv7'"):
        top_activations(model, dataset, "conv7", 3, progress=False)


class Items(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_bad_datasets_get_clear_errors(demo):
    model, dataset, _ = demo
    with pytest.raises(ValueError, match="The dataset is empty"):
        top_activations(model, Items([]), "conv1", 1, progress=False)
    with pytest.raises(ValueError, match="The dataset is empty"):
        dataset_pass(model, Items([]), [FeatureConsumer(model)], progress=False)
    bare = Items([dataset[i][0] for i in range(3)])
    with pytest.raises(ValueError, match=r"\(image, label\) pairs.*dataset\[0\] is a torch"):
        top_activations(model, bare, "conv1", 1, progress=False)
    pil = Items([(Image.new("L", (32, 32)), 0)])
    with pytest.raises(ValueError, match=r"PIL.*Give the dataset a transform"):
        top_activations(model, pil, "conv1", 1, progress=False)
    ints = Items([(torch.zeros(1, 32, 32, dtype=torch.uint8), 0)])
    with pytest.raises(ValueError, match=r"torch.uint8.*Convert the image to float"):
        top_activations(model, ints, "conv1", 1, progress=False)
    mixed = Items([(torch.zeros(1, 32, 32), 0), (torch.zeros(1, 40, 40), 1)])
    with pytest.raises(ValueError, match=r"different sizes.*Resize"):
        top_activations(model, mixed, "conv1", 1, progress=False)
    with pytest.raises(ValueError, match=r"change size from \(32, 32\) to \(40, 40\) at item 1"):
        top_activations(model, mixed, "conv1", 1, batch_size=1, progress=False)
    with pytest.raises(TypeError, match=r"map-style Dataset.*got int"):
        top_activations(model, 5, "conv1", 1, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_pass_runs_on_the_gpu_and_agrees_with_the_cpu(demo):
    model, dataset, _ = demo
    layers = ["conv2", "relu3"]
    cpu = top_activations(model, dataset, layers, 9, device="cpu", progress=False, cache=False)
    gpu = top_activations(model, dataset, layers, 9, device="cuda", progress=False, cache=False)
    assert next(model.parameters()).device.type == "cpu", "the model goes back home"
    for name in layers:
        np.testing.assert_allclose(gpu[name].values, cpu[name].values, rtol=1e-3, atol=1e-3)
        assert (gpu[name].indices == cpu[name].indices).mean() > 0.95
    t = torch.randn(4, 3000, device="cuda").round()
    v, i = topk_lexicographic(t, 50)
    ref = t.sort(dim=1, descending=True, stable=True)
    torch.testing.assert_close(i, ref.indices[:, :50])
    torch.testing.assert_close(v, ref.values[:, :50])
