"""Every remaining bad input (issue #19): a clear error that names the value and the fix, or the
right answer. A half-precision model, an image too small for the network, a one-image map, a
dataset with a random transform, a PNG name that is not one, a 4000² photo's catalogue."""

from __future__ import annotations

import copy
import gc
import os
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset
from torchvision import transforms

from cnnviz_widgets import CNNExplorer, FeatureMaps, OcclusionMap, TopPatches, render
from cnnviz_widgets.inspect import capture, extract_features, layer_catalogue, receptive_fields
from cnnviz_widgets.inspect.embedding import embed, neighbours
from cnnviz_widgets.inspect.items import RandomItemWarning, read_item
from cnnviz_widgets.inspect.occlusion import occlusion_map

# --- 1. a .half() model ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_model_runs_in_its_own_dtype_and_is_left_as_it_is(demo, dtype):
    model, dataset, _ = demo
    low = copy.deepcopy(model).to(dtype)
    before = [(id(p), p.dtype, p.data_ptr()) for p in low.parameters()]
    image = dataset[0][0]  # a float32 image, as a dataset gives it
    # the receptive fields (what blamed input_size) and the catalogue run a zero image in it
    fields = receptive_fields(low, (32, 32))
    assert fields["relu3"].size == receptive_fields(model, (32, 32))["relu3"].size
    shapes = [(i.name, i.output_shape, i.kind) for i in layer_catalogue(low, image)]
    assert shapes == [(i.name, i.output_shape, i.kind) for i in layer_catalogue(model, image)]
    maps = FeatureMaps(low, image)  # the default layer: chosen by the fields
    assert maps.layer == "relu3"
    assert capture(low, image, "relu3")["relu3"].dtype == dtype  # run as the model is
    expected = capture(model, image, "relu3")["relu3"][0].numpy()  # the float32 model's
    np.testing.assert_allclose(maps.activations, expected, atol=0.03 * np.abs(expected).max())
    after = [(id(p), p.dtype, p.data_ptr()) for p in low.parameters()]
    assert after == before  # never cast, never moved: the model's own tensors, as they were
    maps.close()


# --- 2. an image too small for the network --------------------------------------------------


def test_an_image_too_small_names_its_size_the_size_needed_and_the_layer(demo):
    model, _, _ = demo
    # DigitsCNN: three 2×2 max-pools after size-keeping convs; pool3 needs a 2×2 input, so the
    # image must be at least 2 · 2 · 2 = 8 pixels on each side
    message = (
        "The image is 4×4, too small for DigitsCNN: it needs at least 8×8 here (layer 'pool3' "
        "failed on its 64×1×1 input: RuntimeError: "
    )
    with pytest.raises(ValueError) as err:
        FeatureMaps(model, torch.rand(1, 4, 4))
    assert str(err.value).startswith(message)
    assert str(err.value).endswith("resize them with transforms.Resize(8)")
    assert isinstance(err.value.__cause__, RuntimeError)  # torch's own error kept
    with pytest.raises(ValueError, match=r"The image is 7×7, too small .* at least 8×8"):
        capture(model, torch.rand(1, 7, 7), "relu1")
    assert capture(model, torch.rand(1, 8, 8), "pool3")["pool3"].shape == (1, 64, 1, 1)
    # a dataset's images: named as the dataset's
    small = TensorDataset(torch.rand(20, 1, 4, 4), torch.zeros(20, dtype=torch.long))
    with pytest.raises(ValueError, match=r"The dataset's images are 4×4, too small .* 8×8"):
        extract_features(model, small, progress=False, cache=False)
    # occlusion's own forward: the same words
    with pytest.raises(ValueError, match=r"The image is 4×4, too small .* at least 8×8"):
        occlusion_map(model, torch.rand(1, 1, 4, 4), patch_size=2)


def test_a_forward_that_fails_at_every_size_keeps_its_error_and_names_the_layer():
    # 4×4 → conv 2×2 → 16 features, where Linear takes 100 (a 7×7 image only): no size from
    # 8 up runs, so nothing is said of sizes, but the error names the image and the layer
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(100, 2))
    with pytest.raises(RuntimeError, match="mat1 and mat2") as err:
        capture(model, torch.rand(1, 4, 4), "0")
    assert err.value.__notes__ == [
        "The image is 4×4 (as the model gets it): layer '2' failed on its 16 input"
    ]


# --- 3. a map of one image ------------------------------------------------------------------


def test_one_image_maps_to_a_point_with_no_neighbours(demo):
    one = np.arange(5, dtype=np.float32)[None]
    np.testing.assert_array_equal(embed(one, "pca"), [[0.0, 0.0]])
    idx, dist = neighbours(one, k=0, query=0)
    assert idx.shape == dist.shape == (1, 0)
    with pytest.raises(ValueError, match="k must be 0 for 1 feature row: it has no neighbour"):
        neighbours(one, k=1)
    with pytest.raises(ValueError, match=r"t-SNE needs at least 4 points; got 3. Use method='pca'"):
        embed(np.eye(3, dtype=np.float32))
    model, dataset, classes = demo
    x = CNNExplorer(model, Subset(dataset, [0]), classes, method="pca", progress=False)
    x.wait(60)
    assert len(x.embedding.neighbour_indices) == 0
    assert x.embedding.points.tolist() == [[0.0, 0.0]]
    x.close()


# --- 4. a dataset with a random transform ---------------------------------------------------


class Augmented(Dataset):
    """The demo digits through `transform` (a torchvision-style dataset)."""

    def __init__(self, dataset, transform=None):
        self.dataset, self.transform, self.reads = dataset, transform, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.reads += 1
        image, label = self.dataset[i]
        return (self.transform(image) if self.transform else image), label


def test_a_random_transform_is_named_with_the_deterministic_fix(demo):
    model, dataset, _ = demo
    random = transforms.Compose(
        [transforms.RandomResizedCrop(32, scale=(0.5, 1.0)), transforms.RandomHorizontalFlip()]
    )
    with pytest.warns(RandomItemWarning) as record:
        patches = TopPatches(model, Augmented(dataset, random), progress=False)
        patches.wait(60)
    ours = [str(w.message) for w in record if issubclass(w.category, RandomItemWarning)]
    assert len(ours) == 1  # once per dataset
    assert "(Augmented) gave a different image when read again" in ours[0]
    assert "(RandomResizedCrop, RandomHorizontalFlip in its transform)" in ours[0]
    fix = "deterministic transform, e.g. transforms.Resize(256) + transforms.CenterCrop(224)"
    assert f"{fix} instead of RandomResizedCrop(224)" in ours[0]
    patches.close()


def test_a_deterministic_dataset_draws_no_warning_and_no_extra_read(demo):
    plain = Augmented(demo[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomItemWarning)
        for _ in range(3):
            read_item(plain, 5)
    assert plain.reads == 3  # read again to compare: never


def test_a_flip_alone_is_caught_within_a_few_reads_again(demo):
    flips = Augmented(demo[1], transforms.RandomHorizontalFlip())
    with pytest.warns(RandomItemWarning, match=r"RandomHorizontalFlip in its transform"):
        for _ in range(40):  # a flip keeps the image half the time: 1 in 2**39 to miss it
            read_item(flips, 3)


# --- 5. save_png ----------------------------------------------------------------------------


def test_save_png_expands_home_refuses_other_formats_and_leaves_nothing_half_written(
    demo, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    model, dataset, classes = demo
    x = CNNExplorer(model, Subset(dataset, range(40)), classes, method="pca", progress=False)
    x.wait(60)
    panels = [x.feature_maps, x.filters, x.occlusion, x.top_patches, x.embedding]
    for i, panel in enumerate(panels):
        panel.save_png(f"~/p{i}.png")
        assert (home / f"p{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with pytest.raises(ValueError, match=rf"'~/p{i}.jpg' ends in '.jpg'. .* e.g. '~/p{i}.png'"):
            panel.save_png(f"~/p{i}.jpg")
    x.close()
    assert sorted(os.listdir(home)) == [f"p{i}.png" for i in range(5)]  # no .jpg, no temp
    with pytest.raises(FileNotFoundError, match=r"the folder '.*/missing' does not exist"):
        render.save_png(np.zeros((2, 2), np.uint8), home / "missing" / "a.png")
    with pytest.raises(ValueError, match="has no suffix"):
        render.save_png(np.zeros((2, 2), np.uint8), home / "figure")
    # a failed encode or write: the file there stays as it was, no temporary file is left
    old = (home / "p0.png").read_bytes()
    with pytest.raises(TypeError):
        render.save_png(np.zeros((2, 2, 5), np.uint8), home / "p0.png")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        render.save_png(np.zeros((2, 2), np.uint8), "~/p0.png")
    assert (home / "p0.png").read_bytes() == old
    assert sorted(os.listdir(home)) == [f"p{i}.png" for i in range(5)]


# --- 6. the layer catalogue of a large image ------------------------------------------------


class Probe(nn.Module):
    """Counts, when the forward reaches it, the live tensors of the image's height and width."""

    def __init__(self, counts: list):
        super().__init__()
        self.counts = counts  # shared with the view (its dict is a shallow copy)

    def forward(self, x):
        gc.collect()
        size = x.shape[-2:]
        maps = [o for o in gc.get_objects() if issubclass(type(o), torch.Tensor) and o.ndim == 4]
        self.counts.append(sum(1 for o in maps if o.shape[-2:] == size))
        return x


def test_the_catalogue_keeps_shapes_not_every_layers_output():
    counts: list[int] = []
    layers = [m for _ in range(6) for m in (nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())]
    model = nn.Sequential(*layers, Probe(counts))
    # a size no other test's tensors have (the probe counts every live tensor of it)
    catalogue = layer_catalogue(model, torch.rand(1, 3, 59, 71))
    # alive at the end of the forward: the image, the batch made of it and the map in hand;
    # keeping every output to read its shape after held 12 more (one per conv and ReLU)
    assert counts == [3]
    assert [i.output_shape for i in catalogue] == [(3, 59, 71)] * 13
    assert [i.kind for i in catalogue[:2]] == ["linear", "post-activation"]
    for info in catalogue:
        assert not any(isinstance(v, torch.Tensor) for v in vars(info).values())


# --- non-finite numbers: a NaN weight, a NaN baseline, a patch that overflows ---------------


class Overflow(nn.Module):
    """Finite on the image; inf wherever the occluding patch covers the top-left pixel."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        corner = (x[:, :, :1, :1] == 0).all(dim=(1, 2, 3))[:, None]
        out = self.model(x)
        return torch.where(corner, torch.full_like(out, float("inf")), out)


def test_non_finite_numbers_are_named_not_drawn(demo):
    model, dataset, classes = demo
    image = dataset[3][0]
    broken = copy.deepcopy(model)
    with torch.no_grad():
        next(broken.parameters())[0, 0, 0, 0] = float("nan")  # one NaN weight
    with pytest.raises(ValueError, match=r"not finite \(10 of 10 class scores.*check its weights"):
        occlusion_map(broken, image, patch_size=4)
    view = OcclusionMap(broken, image, classes=classes)  # the widget says so, not a NaN map
    with pytest.raises(ValueError, match="not finite"):
        view.wait()
    assert view.status.startswith("error: ValueError: the model's output on the unoccluded")
    view.close()
    with pytest.raises(ValueError, match="baseline must be finite"):
        occlusion_map(model, image, patch_size=4, baseline=float("nan"))
    with pytest.raises(ValueError, match="baseline must be finite"):
        occlusion_map(model, image, patch_size=4, baseline=torch.full((1, 1, 1), float("inf")))
    with pytest.warns(UserWarning, match=r"NaN or inf at \d+ of 256 occluded positions"):
        res = occlusion_map(Overflow(model).eval(), image, patch_size=4, stride=2)
    covered = ~np.isfinite(res.scores)  # the 32×32 digit, patches centred on every 2nd pixel:
    assert covered[:2, :2].all() and covered.sum() == 4  # those at 0 and 2 cover pixel (0, 0)
