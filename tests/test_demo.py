"""Tests for the embedded offline digits demo (dataset, shipped weights, loader)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnviz_widgets.demo import WEIGHTS_PATH, DigitsCNN, DigitsDataset, load_demo

N_ALL = 1797


@pytest.fixture(scope="module")
def splits() -> dict[str, DigitsDataset]:
    return {s: DigitsDataset(s) for s in ("train", "test", "all")}


@pytest.fixture(scope="module")
def demo() -> tuple[DigitsCNN, DigitsDataset, list[str]]:
    return load_demo(split="test")


def test_split_sizes_and_partition(splits: dict[str, DigitsDataset]) -> None:
    train, test, full = splits["train"], splits["test"], splits["all"]
    assert len(test) == 360
    assert len(train) == N_ALL - 360
    assert len(full) == N_ALL
    assert np.array_equal(full.indices, np.arange(N_ALL))
    assert not set(train.indices) & set(test.indices)
    assert sorted(np.concatenate([train.indices, test.indices])) == list(range(N_ALL))
    # Labels must follow the original sklearn indices.
    assert np.array_equal(test.targets, full.targets[test.indices])


def test_test_split_is_stratified(splits: dict[str, DigitsDataset]) -> None:
    full_counts = np.bincount(splits["all"].targets, minlength=10)
    test_counts = np.bincount(splits["test"].targets, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * full_counts) <= 1)


def test_item_shape_dtype_label(splits: dict[str, DigitsDataset]) -> None:
    ds = splits["test"]
    x, y = ds[0]
    assert isinstance(x, torch.Tensor)
    assert x.shape == (1, 32, 32)
    assert x.dtype == torch.float32
    assert isinstance(y, int)
    assert y == int(ds.targets[0])
    assert ds.targets.dtype == np.int64
    assert ds.classes == [str(d) for d in range(10)]


def test_indexing_bounds_and_negative(splits: dict[str, DigitsDataset]) -> None:
    ds = splits["test"]
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(IndexError):
        ds[-len(ds) - 1]
    assert torch.equal(ds[-1][0], ds[len(ds) - 1][0])
    assert ds[-1][1] == ds[len(ds) - 1][1]
    assert sum(1 for _ in ds) == len(ds)


def test_inputs_are_roughly_standardised(splits: dict[str, DigitsDataset]) -> None:
    ds = splits["train"]
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    assert abs(float(x.mean())) < 0.01
    assert abs(float(x.std()) - 1.0) < 0.01


def test_image_matches_denormalized_input(splits: dict[str, DigitsDataset]) -> None:
    ds = splits["test"]
    for i in (0, 17, len(ds) - 1):
        img = ds.image(i)
        assert img.dtype == np.uint8
        assert img.shape == (32, 32)
        unit = ds.denormalize(ds[i][0])
        assert float(unit.min()) >= 0.0 and float(unit.max()) <= 1.0
        diff = np.abs(img.astype(np.float32) / 255.0 - unit[0].numpy())
        assert diff.max() <= 1.0 / 255.0 + 1e-4
    # Ink is bright, as in sklearn: the centre is brighter than the border on average.
    img = ds.image(0).astype(float)
    assert img[8:24, 8:24].mean() > img[:2].mean()


def test_pil_and_transform_roundtrip(splits: dict[str, DigitsDataset]) -> None:
    ds = splits["test"]
    for i in (0, 5, 123):
        pil = ds.pil(i)
        assert pil.mode == "L" and pil.size == (32, 32)
        x = ds.transform(pil)
        assert x.shape == (1, 32, 32) and x.dtype == torch.float32
        assert torch.allclose(x, ds[i][0], atol=0.05)
        assert torch.allclose(ds.transform(ds.image(i)), x)


def test_transform_accepts_any_size(demo: tuple[DigitsCNN, DigitsDataset, list[str]]) -> None:
    model, ds, _ = demo
    big = ds.pil(0).resize((128, 96), Image.BILINEAR)
    x = ds.transform(big)
    assert x.shape == (1, 32, 32)
    with torch.no_grad():
        assert int(model(x[None]).argmax()) == ds[0][1]
    inverted = ds.transform(255 - np.asarray(big), invert=True)
    assert torch.allclose(inverted, x, atol=1e-5)


def test_load_demo_accuracy_and_eval_mode(
    demo: tuple[DigitsCNN, DigitsDataset, list[str]],
) -> None:
    model, ds, classes = demo
    assert isinstance(model, DigitsCNN)
    assert not model.training
    assert all(not m.training for m in model.modules())
    assert classes == [str(d) for d in range(10)]
    assert len(ds) == 360
    inputs = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        logits = torch.cat([model(b) for b in inputs.split(128)])
    assert logits.shape == (360, 10)
    acc = float((logits.argmax(1).numpy() == ds.targets).mean())
    assert acc >= 0.97


def test_model_layers_and_shapes() -> None:
    model = DigitsCNN().eval()
    names = dict(model.named_children())
    for name in ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3"):
        assert name in names
    for name in ("pool3", "flatten", "fc1", "relu4", "dropout", "fc"):
        assert name in names
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    assert len({id(r) for r in relus}) == 4
    assert not any(r.inplace for r in relus)
    x = torch.zeros(2, 1, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 10)
        assert 64 <= model.features(x).shape[1] <= 256


def test_weights_file_small_and_safe_to_load() -> None:
    assert WEIGHTS_PATH.is_file()
    assert WEIGHTS_PATH.stat().st_size < 1_000_000
    state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    assert set(state) == set(DigitsCNN().state_dict())


@pytest.mark.parametrize("bad", ["foo", "val", ""])
def test_bad_split_raises(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        load_demo(split=bad)
    msg = str(info.value)
    assert repr(bad) in msg
    assert "'train', 'test', 'all'" in msg
    with pytest.raises(ValueError):
        DigitsDataset(bad)


def test_train_one_epoch_smoke_is_reproducible() -> None:
    from cnnviz_widgets.demo.train import train

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    model_a, acc_a = train(epochs=1, seed=0)
    model_b, acc_b = train(epochs=1, seed=0)
    assert not model_a.training
    assert 0.0 <= acc_a <= 1.0 and acc_a == acc_b
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    # train() must leave global torch settings as it found them.
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
