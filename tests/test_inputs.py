"""Every input a faithful conversion or a clear error that names the value and the fix (#10)."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch
import traitlets
from PIL import Image
from torch import nn

from cnnviz_widgets import EmbeddingExplorer, FeatureMaps, OcclusionMap, TopPatches
from cnnviz_widgets.inspect import capture, top_activations
from cnnviz_widgets.inspect.inputs import model_image, pil_to_float, to_batch


@contextmanager
def forwards(model):
    """Count the model's forward calls in the block (a pre-hook, removed afterwards)."""
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def rgb_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    ).eval()


class Relabelled(torch.utils.data.Dataset):
    """The first `n` demo images with the given labels (and `targets` when asked)."""

    def __init__(self, base, labels, with_targets):
        self.base, self.labels_ = base, list(labels)
        if with_targets:
            self.targets = list(labels)

    def __len__(self):
        return len(self.labels_)

    def __getitem__(self, i):
        return self.base[i][0], self.labels_[i]


# ------------------------------------------------------------ PIL modes ----


def test_16_bit_images_are_scaled_by_65535_not_clipped():
    values = np.array([[0, 255, 256, 1000], [30000, 40000, 65534, 65535]], np.uint16)
    expected = values.astype(np.float64) / 65535
    little = Image.fromarray(values)
    big = Image.frombytes("I;16B", (4, 2), values.astype(">u2").tobytes())
    assert little.mode == "I;16" and big.mode == "I;16B"
    for image in (little, big):
        gray = to_batch(image, channels=1)
        assert gray.shape == (1, 1, 2, 4)
        np.testing.assert_allclose(gray[0, 0].numpy(), expected, rtol=1e-6)
        rgb = to_batch(image, channels=3)
        for c in range(3):  # a gray image to an RGB model: R = G = B, nothing lost
            np.testing.assert_allclose(rgb[0, c].numpy(), expected, rtol=1e-6)


def test_mode_I_reads_16_bit_values_and_refuses_values_with_no_range():
    values = np.array([[0, 1, 65535]], np.int32)
    image = Image.fromarray(values, mode="I")
    np.testing.assert_allclose(to_batch(image, channels=1)[0, 0].numpy(), values / 65535, 1e-6)
    wide = Image.fromarray(np.array([[-5, 0, 70000]], np.int32), mode="I")
    with pytest.raises(ValueError, match=r"mode 'I'.*values -5\.\.70000.*float tensor"):
        to_batch(wide, channels=1)


def test_float_images_keep_their_values():
    values = np.array([[-0.5, 0.0, 0.25, 3.75]], np.float32)
    image = Image.fromarray(values, mode="F")
    np.testing.assert_array_equal(to_batch(image, channels=1)[0, 0].numpy(), values)


def test_8_bit_modes():
    gray = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_allclose(pil_to_float(Image.fromarray(gray), 1)[0].numpy(), gray / 255)
    bits = Image.fromarray(np.array([[True, False, True]]))
    assert bits.mode == "1"
    assert pil_to_float(bits, 1)[0].tolist() == [[1.0, 0.0, 1.0]]
    rgba = np.array([[[255, 0, 0, 0], [0, 128, 255, 77]]], np.uint8)
    image = Image.fromarray(rgba, mode="RGBA")
    # alpha is dropped (as torchvision's loader does), kept for a 4-channel model
    np.testing.assert_allclose(
        pil_to_float(image, 3).numpy(), rgba[..., :3].transpose(2, 0, 1) / 255
    )
    np.testing.assert_allclose(pil_to_float(image, 4).numpy(), rgba.transpose(2, 0, 1) / 255)
    la = Image.fromarray(np.array([[[10, 0], [200, 255]]], np.uint8), mode="LA")
    np.testing.assert_allclose(pil_to_float(la, 1)[0].numpy(), [[10 / 255, 200 / 255]])


def test_palette_and_colour_models_are_read_as_their_colours():
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    assert pil_to_float(palette, 3)[:, 0].tolist() == [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    rgb = np.array([[[200, 100, 50]]], np.uint8)
    luma = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    assert pil_to_float(Image.fromarray(rgb), 1).item() == pytest.approx(luma, abs=1 / 255)
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 0, 0))  # full magenta
    assert pil_to_float(cmyk, 3)[:, 0, 0].tolist() == [1.0, 0.0, 1.0]
    lab = Image.new("LAB", (2, 2))  # PIL converts LAB only to RGB: read through it
    assert pil_to_float(lab, 1).shape == (1, 2, 2)


def test_a_pil_image_for_a_model_of_other_channels_names_it():
    with pytest.raises(ValueError, match=r"expects 2 input channels.*1 \(gray\), 3 \(RGB\)"):
        pil_to_float(Image.new("L", (4, 4)), 2)


# ----------------------------------------------------- tensors, arrays ----


def test_wrong_channels_are_refused_before_anything_runs(demo):
    model, dataset, _ = demo
    x = dataset[0][0]
    with forwards(model) as calls:
        for run in (
            lambda: capture(model, x.repeat(3, 1, 1), "conv1"),
            lambda: FeatureMaps(model, x.repeat(3, 1, 1)),
            lambda: OcclusionMap(model, x.repeat(3, 1, 1)),
        ):
            with pytest.raises(ValueError, match=r"expects 1 input.*\(3, 32, 32\).*rgb_to_gray"):
                run()
    assert calls == []
    three = rgb_model()
    with pytest.raises(
        ValueError, match=r"expects 3 input.*\(1, 1, 8, 8\).*x\.repeat\(1, 3, 1, 1\)"
    ):
        capture(three, torch.zeros(1, 1, 8, 8), "0")
    with pytest.raises(ValueError, match=r"\(8, 8, 3\).*channels-last.*x\.permute\(2, 0, 1\)"):
        capture(three, torch.zeros(8, 8, 3), "0")


def test_a_colour_pil_image_goes_to_a_gray_model_as_its_luma(demo):
    model, dataset, _ = demo
    image = Image.fromarray(dataset.image(0)).convert("RGB")
    via_rgb = capture(model, image, "conv1")["conv1"]
    via_gray = capture(model, torch.from_numpy(dataset.image(0) / 255.0).float()[None], "conv1")
    torch.testing.assert_close(via_rgb, via_gray["conv1"])
    assert model_image(model, image).shape == (1, 1, 32, 32)
    # and a gray image to an RGB model as R = G = B
    three = rgb_model()
    gray = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    batch = model_image(three, gray)
    assert batch.shape == (1, 3, 8, 8) and torch.equal(batch[0, 0], batch[0, 2])


def test_integer_arrays_say_how_to_convert():
    with pytest.raises(ValueError, match=r"floating-point.*uint8.*\(32, 32, 3\).*fromarray"):
        to_batch(np.zeros((32, 32, 3), np.uint8), channels=3)
    with pytest.raises(ValueError, match=r"shape \(32, 32\); for a one-channel.*x\[None\]"):
        to_batch(torch.zeros(32, 32), channels=1)
    with pytest.raises(ValueError, match=r"NumPy array of dtype object"):
        to_batch(np.array([[None]], dtype=object))
    big_endian = np.arange(16, dtype=">f4").reshape(1, 4, 4)
    assert to_batch(big_endian, channels=1)[0, 0].flatten().tolist() == list(range(16))


def test_a_transform_that_gives_no_tensor_or_wrong_channels_is_named(demo):
    model, _, _ = demo
    image = Image.new("RGB", (32, 32))
    with pytest.raises(ValueError, match=r"transform= returned a Image.*ToTensor"):
        model_image(model, image, transform=lambda im: im)
    with pytest.raises(ValueError, match=r"transform= gave.*\(3, 32, 32\).*Grayscale\(num_output"):
        model_image(model, image, transform=lambda im: torch.zeros(3, 32, 32))


def test_an_image_that_requires_grad_is_detached(demo):
    model, dataset, _ = demo
    x = dataset[0][0]
    leaf = x.clone().requires_grad_(True)
    maps = FeatureMaps(model, leaf, "conv2")
    np.testing.assert_array_equal(maps.activations, FeatureMaps(model, x, "conv2").activations)
    occ = OcclusionMap(model, leaf * 1.0, patch_size=8, stride=8, method="full")
    plain = OcclusionMap(model, x, patch_size=8, stride=8, method="full")
    np.testing.assert_allclose(occ.wait().scores, plain.wait().scores, atol=1e-6)
    assert model_image(model, leaf).requires_grad is False


def test_non_finite_pixels_are_counted_and_located(demo):
    model, dataset, _ = demo
    x = dataset[0][0].clone()
    x[0, 3, 4] = float("nan")
    x[0, 20, 1] = float("inf")
    message = r"2 non-finite value\(s\).*first is nan at channel 0, row 3, column 4"
    with forwards(model) as calls:
        for run in (
            lambda: capture(model, x, "conv1"),
            lambda: FeatureMaps(model, x),
            lambda: OcclusionMap(model, x),
        ):
            with pytest.raises(ValueError, match=message):
                run()
    assert calls == []
    batch = torch.zeros(3, 1, 4, 4)
    batch[1, 0, 2, 3] = -float("inf")
    with pytest.raises(
        ValueError, match=r"1 non-finite.*-inf at channel 0, row 2, column 3 of image 1"
    ):
        to_batch(batch)
    with pytest.raises(ValueError, match=r"column 3 of dataset\[33\]\. Replace them"):
        to_batch(batch, first_index=32)
    items = [(x.nan_to_num() * (i != 37), 0) for i in range(60)]
    items[37] = (x, 0)
    with pytest.raises(
        ValueError, match=r"A batch of 28 .* 2 non-finite.*row 3, column 4 of dataset\[37\]"
    ):
        top_activations(model, items, ["conv1"], 3, batch_size=32, progress=False, cache=False)


def test_float64_and_float16_images_take_the_models_dtype(demo):
    model, dataset, _ = demo
    x = dataset[0][0]
    want = capture(model, x, "conv2")["conv2"]
    torch.testing.assert_close(capture(model, x.double(), "conv2")["conv2"], want)
    half = capture(model, x.half(), "conv2")["conv2"]
    torch.testing.assert_close(half, capture(model, x.half().float(), "conv2")["conv2"])
    assert half.dtype == torch.float32
    wide = rgb_model().double()
    assert capture(wide, torch.rand(3, 8, 8), "0")["0"].dtype == torch.float64
    assert model_image(wide, torch.rand(3, 8, 8)).dtype == torch.float64


# -------------------------------------------------------- widget arguments ----


def test_occlusion_geometry_is_checked_at_construction_and_on_change(demo):
    model, dataset, _ = demo
    x = dataset[0][0]
    with forwards(model) as calls:
        for kwargs, message in [
            ({"strides": [0]}, r"strides\[0\] = 0 is out of range 1 or more"),
            ({"strides": [4, -1]}, r"strides\[1\] = -1 is out of range"),
            ({"strides": []}, "strides is empty"),
            ({"strides": 4}, r"strides must be a list of ints.*stride=\.\.\."),
            ({"patch_size": 0}, r"patch_size 0 is out of range 1\.\.32"),
            ({"patch_size": 40}, r"patch_size 40 is out of range 1\.\.32"),
            ({"stride": 0}, "stride 0 is out of range 1 or more"),
            ({"patch_size": 2.5}, r"patch_size must be a positive int; got 2\.5"),
            ({"baseline": float("nan")}, "baseline must be a finite number"),
            ({"method": "fast"}, "Unknown method 'fast'; methods are: incremental, full"),
        ]:
            with pytest.raises(ValueError, match=message):
                OcclusionMap(model, x, **kwargs)
    assert calls == []
    view = OcclusionMap(model, x, patch_size=8, stride=8, method="full")
    view.wait()
    with pytest.raises(traitlets.TraitError, match="patch_size 0 is out of range"):
        view.patch_size = 0
    with pytest.raises(traitlets.TraitError, match="baseline must be a finite number"):
        view.baseline = float("inf")
    with pytest.raises(ValueError, match=r"patch_size 8 is larger than the new image \(4×4\)"):
        view.image = x[:, :4, :4]
    assert view.image is x and view.patch_size == 8 and view.baseline == 0.0


def test_widgets_refuse_a_data_loader_at_once(demo):
    model, dataset, classes = demo
    loader = torch.utils.data.DataLoader(dataset, batch_size=32)
    with forwards(model) as calls:
        with pytest.raises(
            TypeError, match=r"TopPatches needs a map-style.*not a DataLoader.*\.dataset"
        ):
            TopPatches(model, loader, "conv2", progress=False)
        with pytest.raises(TypeError, match=r"EmbeddingExplorer needs a map-style.*DataLoader"):
            EmbeddingExplorer(model, loader, classes, progress=False)
        with pytest.raises(ValueError, match="Unknown metric 'manhattan'; metrics are: euclidean"):
            EmbeddingExplorer(model, dataset, classes, metric="manhattan", progress=False)
        with pytest.raises(ValueError, match="channels_per_page 0 is out of range"):
            TopPatches(model, dataset, "conv2", channels_per_page=0, progress=False)
    assert calls == []


def test_top_patches_labels_outside_the_classes_are_named(demo):
    model, dataset, classes = demo
    labels = [i % 10 for i in range(40)]
    labels[7] = 12
    relabelled = Relabelled(dataset, labels, with_targets=True)
    message = r"dataset\[7\] has label 12, but there are 10 class"
    with forwards(model) as calls, pytest.raises(ValueError, match=message):
        TopPatches(model, relabelled, "conv2", 3, classes=classes)  # targets: before the pass
    assert calls == []
    # no targets: the labels read in the pass (those of the patches shown) are checked
    bad = Relabelled(dataset, [12] * 40, with_targets=False)
    with pytest.raises(ValueError, match=r"has label 12, but there are 10 class names"):
        TopPatches(model, bad, "conv2", 3, classes=classes, progress=False).wait(60)
    good = Relabelled(dataset, [i % 10 for i in range(40)], with_targets=False)
    fine = TopPatches(model, good, "conv1", 3, classes=classes, progress=False).wait(60)
    with pytest.raises(traitlets.TraitError, match=r"k 41 is out of range 1\.\.40"):
        fine.k = 41
    with pytest.raises(traitlets.TraitError, match="channels_per_page 0 is out of range"):
        fine.channels_per_page = 0
    assert fine.k == 3


def test_numpy_and_torch_integers_are_taken_as_indices(demo):
    model, dataset, classes = demo
    x = dataset[0][0]
    for target in (np.int64(3), torch.tensor(3), torch.tensor([3])):
        view = OcclusionMap(model, x, target, patch_size=8, stride=8, method="full")
        assert view.target == 3
        view.wait()
    with pytest.raises(ValueError, match=r"target must be an int; got 2\.5"):
        OcclusionMap(model, x, 2.5)
    small = Relabelled(dataset, [i % 10 for i in range(40)], with_targets=False)
    top = TopPatches(model, small, "conv1", np.int64(2), classes=classes, progress=False).wait()
    assert top.k == 2 and top.top.k == 2
