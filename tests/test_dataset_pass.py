"""A dataset pass that scales: results written into arrays allocated once (in memory or a
memory-mapped temporary file), flat Python-side memory, caches keyed by the data's contents."""

from __future__ import annotations

import copy
import gc
import random
import sys
import tempfile
import tracemalloc
import warnings
import weakref

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

import cnnviz_widgets.inspect.dataset as dataset_module
from cnnviz_widgets.inspect import store
from cnnviz_widgets.inspect.dataset import (
    FeatureConsumer,
    PassCache,
    dataset_pass,
    top_activations,
)
from cnnviz_widgets.inspect.features import clear_feature_cache, extract_features, feature_pass
from cnnviz_widgets.inspect.fingerprint import data_fingerprint

FIELDS = ("features", "labels", "predictions", "confidences")


class Images(Dataset):
    """Items kept as a list of tensors, so that one can be replaced or edited in place."""

    def __init__(self, images, labels):
        self.images, self.labels = list(images), list(labels)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


class Lazy(Dataset):
    """n 1x32x32 images, item i made on demand from a pool of 16: nothing held per item."""

    POOL = torch.randn(16, 1, 32, 32, generator=torch.Generator().manual_seed(0))

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.POOL[i % 16] * (1 + i / self.n), i % 10


class Stream(IterableDataset):
    """The items of a map-style dataset, without a length."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __iter__(self):
        return (self.dataset[i] for i in range(len(self.dataset)))


@pytest.fixture
def counted(monkeypatch):
    """The number of dataset passes run so far (cached_pass runs dataset_module.dataset_pass)."""
    passes = []
    real = dataset_module.dataset_pass

    def counting(*args, **kwargs):
        passes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset_module, "dataset_pass", counting)
    return passes


@pytest.fixture
def small(demo):
    model, dataset, _ = demo
    n = 96
    return copy.deepcopy(model), Images([dataset[i][0].clone() for i in range(n)], range(n))


def mapping_files() -> list[str]:
    with open("/proc/self/maps") as f:
        return [line.split(None, 5)[-1].strip() for line in f if store.FILE_PREFIX in line]


def memmap_of(array: np.ndarray) -> np.memmap | None:
    while array is not None and not isinstance(array, np.memmap):
        array = array.base
    return array


# ---------------------------------------------------------------- storage ----


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_the_memory_mapped_result_equals_the_in_memory_one_exactly(small, monkeypatch, dtype):
    model, data = small
    in_memory = feature_pass(model, data, progress=False, cache=False, dtype=dtype, batch_size=40)
    assert memmap_of(in_memory.features) is None
    monkeypatch.setattr(store, "MEMMAP_BYTES", 0)
    mapped = feature_pass(model, data, progress=False, cache=False, dtype=dtype, batch_size=40)
    assert memmap_of(mapped.features) is not None
    assert type(mapped.features) is np.ndarray  # a plain array (a view of the mapping)
    for name in FIELDS:
        a, b = getattr(in_memory, name), getattr(mapped, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert mapped.features.dtype == dtype and not mapped.features.flags.writeable


def test_unknown_or_shorter_lengths_fill_the_same_rows(small, monkeypatch):
    model, data = small
    want = feature_pass(model, data, progress=False, cache=False, batch_size=40)
    monkeypatch.setattr(store, "_FIRST_ROWS", 16)  # an iterable dataset: the block grows
    for grown in (Stream(data), DataLoader(Stream(data), batch_size=40)):
        got = feature_pass(model, grown, progress=False, cache=False, batch_size=40)
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    dropped = DataLoader(data, batch_size=40, drop_last=True)  # fewer rows than len(data)
    got = feature_pass(model, dropped, progress=False, cache=False)
    assert len(got.features) == 80
    np.testing.assert_array_equal(got.features, want.features[:80])


def test_the_temporary_file_goes_when_the_result_is_collected(small, monkeypatch, tmp_path):
    model, data = small
    monkeypatch.setattr(store, "MEMMAP_BYTES", 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = feature_pass(model, data, progress=False, cache=False)
    mapped = weakref.ref(memmap_of(result.features))
    assert mapped() is not None
    assert list(tmp_path.iterdir()) == []  # unlinked at once: nothing left if the process dies
    if sys.platform.startswith("linux"):
        (name,) = [f for f in mapping_files() if f.startswith(str(tmp_path))]
        assert name.endswith("(deleted)")
    del result
    gc.collect()
    assert mapped() is None  # the mapping, hence the file's space, is gone
    if sys.platform.startswith("linux"):
        assert [f for f in mapping_files() if f.startswith(str(tmp_path))] == []


def traced_peak(model, n: int) -> int:
    """Peak bytes traced by tracemalloc (Python objects and NumPy arrays) during a pass."""
    gc.collect()
    tracemalloc.start()
    try:
        dataset_pass(model, Lazy(n), [FeatureConsumer(model)], progress=False, batch_size=64)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("mapped", [False, True])
def test_python_side_peak_memory_is_flat_in_the_number_of_images(demo, monkeypatch, mapped):
    model = demo[0]
    if mapped:
        monkeypatch.setattr(store, "MEMMAP_BYTES", 0)
    n = 256
    traced_peak(model, 64)  # first-call allocations (imports, caches) out of the way
    small, large = traced_peak(model, n), traced_peak(model, 4 * n)
    result = 4 * n * (128 * 4 + 8 + 8 + 4)  # features (128 float32), labels, predictions, conf
    print(f"traced peak: {small / 2**20:.2f} MiB at N={n}, {large / 2**20:.2f} MiB at 4N")
    assert large < 2 * small + result
    # sharper: the peak grows by what the result grows (a final concatenation of NumPy parts
    # would double that), and not at all when the result is mapped from a file
    grows = 0 if mapped else result * 3 / 4
    assert large - small < 1.1 * grows + 256 * 2**10


class LiveTensors:
    """A consumer that counts the tensors alive after each batch (torch's memory, which
    tracemalloc does not see) and their storage bytes."""

    outputs = inputs = ()

    def begin(self, info):
        self.length, self.last = info.length, None

    def update(self, batch):
        if batch.start + len(batch.indices) < self.length:
            return  # the last batch only: gc.get_objects() is not cheap
        with warnings.catch_warnings():  # isinstance on deprecated torch aliases warns
            warnings.simplefilter("ignore")
            tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
        strided = [t for t in tensors if t.layout == torch.strided]
        self.last = len(tensors), sum(t.untyped_storage().nbytes() for t in strided)

    def result(self):
        return self.last


def test_nothing_is_kept_per_batch(demo, monkeypatch):
    """What made the resident memory grow: every batch left its small arrays (NumPy views of
    torch tensors) alive between the large short-lived ones, and the C heap could not reuse
    the gaps. Now the tensors alive after the last batch are as many at 16 batches as at 4,
    and the result is allocated once."""
    model = demo[0]
    allocations = []
    real = store.allocate
    monkeypatch.setattr(store, "allocate", lambda *a: allocations.append(1) or real(*a))
    alive = []
    for n in (256, 1024):
        consumers = [FeatureConsumer(model), LiveTensors()]
        alive.append(dataset_pass(model, Lazy(n), consumers, progress=False, batch_size=64)[1])
    assert allocations == [1, 1]
    (count_n, bytes_n), (count_4n, bytes_4n) = alive
    assert count_4n == count_n and bytes_4n == bytes_n


# ------------------------------------------------------------------ cache ----


def test_an_item_changed_in_place_is_seen(small, counted):
    model, data = small
    first = extract_features(model, data, progress=False)
    top = top_activations(model, data, "conv3", 3, progress=False)["conv3"]
    assert extract_features(model, data, progress=False) is first and len(counted) == 2
    assert top_activations(model, data, "conv3", 3, progress=False)["conv3"].values is top.values
    assert len(counted) == 2
    data.images[0].mul_(-3.0).add_(2.0)  # the same object, one item edited in place
    changed = extract_features(model, data, progress=False)
    assert len(counted) == 3 and changed is not first
    np.testing.assert_array_equal(
        changed, extract_features(model, data, progress=False, cache=False)
    )
    assert not np.array_equal(changed[0], first[0])
    np.testing.assert_array_equal(changed[1:], first[1:])
    retop = top_activations(model, data, "conv3", 3, progress=False)["conv3"]
    fresh = top_activations(model, data, "conv3", 3, progress=False, cache=False)["conv3"]
    assert len(counted) == 6  # features: 1 + 1 fresh; top-k: 1 + 1 fresh
    np.testing.assert_array_equal(retop.values, fresh.values)
    np.testing.assert_array_equal(retop.indices, fresh.indices)
    data.labels[-1] = 7  # a label replaced: the last index is always sampled
    extract_features(model, data, progress=False)
    assert len(counted) == 7


def test_a_new_object_with_the_same_contents_hits(small, counted):
    model, data = small
    first = feature_pass(model, data, progress=False)
    top = top_activations(model, data, "conv3", 3, progress=False)["conv3"]
    twin = Images([x.clone() for x in data.images], list(data.labels))
    assert feature_pass(model, twin, progress=False) is first
    again = top_activations(model, twin, "conv3", 3, progress=False)["conv3"]
    assert len(counted) == 2
    np.testing.assert_array_equal(again.values, top.values)
    assert again.dataset is twin and top.dataset is data  # each shows its caller's dataset
    loader = DataLoader(twin, batch_size=7)  # the same items, batched otherwise
    assert feature_pass(model, loader, progress=False) is first and len(counted) == 2
    shorter = Images(data.images[:-1], data.labels[:-1])
    assert len(feature_pass(model, shorter, progress=False).features) == len(data) - 1
    assert len(counted) == 3


def test_data_that_cannot_be_sampled_hits_only_as_the_same_object(small, counted):
    model, data = small
    stream = Stream(data)
    assert data_fingerprint(stream) is None
    first = feature_pass(model, stream, progress=False)
    assert feature_pass(model, stream, progress=False) is first and len(counted) == 1
    feature_pass(model, Stream(data), progress=False)
    assert len(counted) == 2
    odd = DataLoader(data, collate_fn=lambda items: torch.utils.data.default_collate(items))
    assert data_fingerprint(odd) is None  # what its collate_fn does is not sampled


def test_the_fingerprint_is_deterministic_and_leaves_the_random_streams_alone():
    class Augmented(Lazy):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return x + torch.rand(()) + random.random() + float(np.random.rand()), y

    data = Augmented(50)
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    before = data_fingerprint(data)
    state = torch.rand(3), random.random(), np.random.rand()
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    assert data_fingerprint(data) == before
    assert (torch.rand(3), random.random(), np.random.rand())[1:] == state[1:]
    torch.manual_seed(1)
    data_fingerprint(data)
    assert torch.equal(torch.rand(3), state[0])
    assert data_fingerprint(Lazy(50)) != data_fingerprint(Lazy(51)) != before


def test_clear_feature_cache_lets_the_mapping_go(small, monkeypatch):
    model, data = small
    monkeypatch.setattr(store, "MEMMAP_BYTES", 0)
    mapped = weakref.ref(memmap_of(extract_features(model, data, progress=False)))
    gc.collect()
    assert mapped() is not None  # the cache holds it
    clear_feature_cache()
    gc.collect()
    assert mapped() is None


def test_the_cache_holds_the_model_weakly_and_hits_only_for_it(small):
    model, data = copy.deepcopy(small[0]), small[1]  # the fixture keeps its own model
    extract_features(model, data, progress=False)
    collected = weakref.ref(model)
    del model
    gc.collect()
    assert collected() is None  # the cache did not keep the model alive
    cache = PassCache()
    a, b = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    cache.put(("key",), (a,), "result")
    assert cache.get(("key",), (a,)) == "result"
    assert cache.get(("key",), (b,)) is None  # an id reused by another object does not hit
