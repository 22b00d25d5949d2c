"""The dataset pass as a batch job (cnnviz_widgets.batch): the store it writes holds what the
in-process pass computes, a rerun resumes an interrupted job into the same bytes, a store
refuses another model or dataset, and Ray's workers write the same store (skipped without Ray).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import Dataset, Subset

import cnnviz_widgets.batch.block as block_module
from cnnviz_widgets.batch import StoreMismatchError, open_store, run_batch
from cnnviz_widgets.batch.__main__ import main
from cnnviz_widgets.demo import DigitsCNN, load_demo
from cnnviz_widgets.inspect.dataset import TopKConsumer, dataset_pass, display_image
from cnnviz_widgets.inspect.features import feature_pass
from cnnviz_widgets.inspect.fingerprint import sample_indices
from cnnviz_widgets.render import fit_tiles

LAYERS = ["conv2", "relu3"]
K = 5
SIZES = {"batch_size": 32, "block_size": 64}  # 360 test digits: 6 blocks, the last of 40
FAIL_AT = 200  # an item of block 3 that the data fingerprint does not sample
ARMED = {"fail": False}


def demo_model():
    return load_demo()[0]


def demo_data():
    return load_demo()[1]


class Flaky(Dataset):
    """The demo digits, whose item FAIL_AT raises while ARMED, or while the file `flag` exists
    (seen by Ray's worker processes too): a worker failing midway."""

    def __init__(self, flag: Path | None = None):
        self.inner, self.flag = demo_data(), flag

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        armed = ARMED["fail"] or (self.flag is not None and self.flag.exists())
        if armed and i == FAIL_AT:
            raise OSError("simulated failure")
        return self.inner[i]


def flaky_data():
    return Flaky()


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def job(out, **options):
    settings = {"layers": LAYERS, "k": K, "engine": "local", "progress": False, **SIZES}
    return run_batch(demo_model, demo_data, out, **{**settings, **options})


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One store of the demo digits, made in-process with thumbnails."""
    out = tmp_path_factory.mktemp("store")
    return out, job(out, thumbnails=16)


def test_rows_are_the_in_process_features(made, demo):
    out, run = made
    model, dataset, _ = demo
    store = open_store(out)
    expected = feature_pass(model, dataset, cache=False, progress=False, batch_size=32)
    assert FAIL_AT not in sample_indices(len(dataset))
    assert run.engine == "local" and (run.computed, run.skipped) == (6, 0)
    assert store.features.shape == (360, 128) and store.features.dtype == np.float32
    for name in ("features", "labels", "predictions", "confidences"):
        assert np.array_equal(getattr(store, name), getattr(expected, name)), name
    assert (store.labels == dataset.targets).all()
    got = store.as_features()
    assert (got.layer, got.from_input, got.pooled) == ("fc", True, False)
    assert store.classes == [str(d) for d in range(10)]


def test_thumbnails_are_the_embedding_widgets(made, demo):
    _, dataset, _ = demo
    store = open_store(made[0])
    images = [display_image(dataset, i) for i in range(len(dataset))]
    assert np.array_equal(store.thumbnails, fit_tiles(images, 16))


def in_process_top(model, dataset, distinct=True):
    consumer = TopKConsumer(model, LAYERS, K, distinct=distinct)
    (top,) = dataset_pass(model, dataset, [consumer], batch_size=32, progress=False)
    return top


def check_top(store, expected):
    assert store.layers == LAYERS
    for layer in LAYERS:
        got, want = store.top(layer), expected[layer]
        for name in ("values", "indices", "ys", "xs", "labels"):
            assert np.array_equal(getattr(got, name), getattr(want, name)), (layer, name)
        assert got.field == want.field and got.distinct == want.distinct


def test_top_k_is_the_in_process_top_k(made, demo):
    model, dataset, _ = demo
    expected = in_process_top(model, dataset)
    check_top(open_store(made[0], dataset=dataset), expected)
    top = open_store(made[0], dataset=dataset).top("conv2")  # crops as the widgets do
    assert np.array_equal(top.patch(3, 0), expected["conv2"].patch(3, 0))


def test_top_k_over_positions_breaks_ties_as_in_process(tmp_path, demo):
    """distinct=False on ReLU maps: many units tie (at 0 where a channel rarely fires), so
    the merge must order ties by dataset index, then position, as the running top-k does."""
    model, dataset, _ = demo
    store = job(tmp_path, distinct=False, k=40).store
    consumer = TopKConsumer(model, LAYERS, 40, distinct=False)
    (expected,) = dataset_pass(model, dataset, [consumer], batch_size=32, progress=False)
    ties = sum(int((np.diff(expected[n].values, axis=1) == 0).sum()) for n in LAYERS)
    assert ties > 0
    for layer in LAYERS:
        got, want = store.top(layer), expected[layer]
        for name in ("values", "indices", "ys", "xs", "labels"):
            assert np.array_equal(getattr(got, name), getattr(want, name)), (layer, name)


def test_interrupted_job_resumes_into_the_same_store(tmp_path, monkeypatch):
    reference = tmp_path / "whole"
    whole = run_batch(
        demo_model, flaky_data, reference, layers=LAYERS, k=K, engine="local", progress=False,
        **SIZES,
    )  # fmt: skip
    assert whole.computed == 6
    computed: list[int] = []
    real = block_module.compute_block

    def counting(model, dataset, spec, block, *args, **kwargs):
        computed.append(block)
        return real(model, dataset, spec, block, *args, **kwargs)

    monkeypatch.setattr(block_module, "compute_block", counting)
    out = tmp_path / "resumed"
    options = {"layers": LAYERS, "k": K, "engine": "local", "progress": False, **SIZES}
    ARMED["fail"] = True
    try:
        with pytest.raises(Exception, match=f"dataset\\[{FAIL_AT - 192}\\]|simulated"):
            run_batch(demo_model, flaky_data, out, **options)
    finally:
        ARMED["fail"] = False
    assert computed == [0, 1, 2, 3]
    assert sorted(p.name for p in (out / "blocks").iterdir()) == [f"{b:06d}.npz" for b in range(3)]
    with pytest.raises(ValueError, match="not complete"):
        open_store(out)
    # a killed writer's leftovers: a half-written temporary file, a truncated block
    (out / "blocks" / ".tmp-999-000003.npz").write_bytes(b"half")
    cut = out / "blocks" / "000001.npz"
    cut.write_bytes(cut.read_bytes()[:1000])
    computed.clear()
    run = run_batch(demo_model, flaky_data, out, **options)
    assert computed == [1, 3, 4, 5] and (run.computed, run.skipped) == (4, 2)
    assert files(out) == files(reference)  # byte for byte, blocks gone
    computed.clear()
    again = run_batch(demo_model, flaky_data, out, **options)
    assert computed == [] and again.engine == "none"


def test_another_model_or_dataset_is_refused(made, demo):
    out, run = made
    model, dataset, _ = demo
    open_store(out, model=model, dataset=dataset)  # the right ones pass
    other = DigitsCNN().eval()
    with pytest.raises(StoreMismatchError) as caught:
        open_store(out, model=other)
    message = str(caught.value)
    assert run.store.model_fingerprint in message
    from cnnviz_widgets.inspect.fingerprint import data_fingerprint, weights_fingerprint

    assert weights_fingerprint(other) in message and "new folder" in message
    part = Subset(dataset, range(100))
    with pytest.raises(StoreMismatchError, match=data_fingerprint(part)):
        open_store(out, dataset=part)
    with pytest.raises(StoreMismatchError, match="weights fingerprint"):
        run_batch(lambda: other, demo_data, out, layers=LAYERS, k=K, engine="local", **SIZES)
    with pytest.raises(StoreMismatchError, match="another job"):
        job(out, k=3)


def test_overwrite_replaces_another_jobs_store(made, tmp_path):
    out = tmp_path / "store"
    shutil.copytree(made[0], out)
    run = job(out, k=3, overwrite=True)
    assert run.computed == 6 and open_store(out).k == 3
    assert not (out / "thumbnails.npy").exists()  # the old job's files are gone


def test_open_is_lazy(made):
    began = time.perf_counter()
    store = open_store(made[0])
    assert time.perf_counter() - began < 1.0
    assert isinstance(store.features, np.memmap) and not store.features.flags.writeable
    assert len(store) == 360 and store.k == K


def test_checks_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="multiple of batch_size"):
        job(tmp_path / "a", batch_size=32, block_size=48)
    with pytest.raises(ValueError, match="k=400 is larger than the dataset"):
        job(tmp_path / "b", k=400)
    with pytest.raises(ValueError, match=r"no spatial output|receptive field"):
        job(tmp_path / "c", layers=["fc1"])
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a store"):
        job(tmp_path / "d")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_without_ray_auto_runs_in_process(monkeypatch):
    from cnnviz_widgets.batch.job import pick_engine

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    assert pick_engine("auto") == "local"
    with pytest.raises(ImportError, match=r"cnnviz-widgets\[distributed\]"):
        pick_engine("ray")


def test_command_line(tmp_path, made, capsys):
    out = tmp_path / "cli"
    args = ["--model", "tests.test_batch:demo_model", "--dataset", "tests.test_batch:demo_data",
            "--layers", ",".join(LAYERS), "--k", str(K), "--batch-size", "32",
            "--block-size", "64", "--thumbnails", "16", "--engine", "local", "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 360 and summary["computed"] == 6
    assert files(out) == files(made[0])


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_workers_write_the_same_store(ray_cluster, tmp_path, made):
    run = job(tmp_path / "ray", engine="ray", workers=2, thumbnails=16)
    assert run.engine == "ray" and run.computed == 6
    assert files(tmp_path / "ray") == files(made[0])


def test_ray_job_resumes_after_a_failed_worker(ray_cluster, tmp_path):
    flag = tmp_path / "fail"
    flag.touch()
    out, options = tmp_path / "store", {"layers": LAYERS, "k": K, "progress": False, **SIZES}
    with pytest.raises(Exception, match="simulated failure"):
        run_batch(demo_model, partial(Flaky, flag), out, engine="ray", workers=2, **options)
    written = len(list((out / "blocks").glob("0*.npz")))
    assert written < 6
    flag.unlink()
    run = run_batch(demo_model, partial(Flaky, flag), out, engine="ray", workers=2, **options)
    assert (run.computed, run.skipped) == (6 - written, written)
    reference = run_batch(demo_model, Flaky, tmp_path / "local", engine="local", **options)
    assert reference.computed == 6 and files(out) == files(tmp_path / "local")
