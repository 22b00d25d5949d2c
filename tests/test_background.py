"""Dataset views open at once (#11): the pass and the map run on a thread,
the view shows their progress, `wait()` returns the finished result, equal to the functions."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from torch.utils.data import Dataset

from cnnviz_widgets import CNNExplorer, EmbeddingExplorer, TopPatches, render
from cnnviz_widgets.inspect import effective, embed, feature_pass, top_activations


class Slow(Dataset):
    """The demo's items, each read taking `delay` seconds; counts the reads. Reads from our
    background threads wait for `gate`: a widget that returns while it is shut did not wait
    for its pass (no timing involved)."""

    def __init__(self, base, n: int, delay: float = 0.01):
        self.base, self.n, self.delay = base, n, delay
        self.classes = base.classes
        self.reads = 0
        self.gate = threading.Event()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if threading.current_thread().name.startswith("cnnviz"):
            self.gate.wait(60)
        with self._lock:
            self.reads += 1
        time.sleep(self.delay)
        return self.base[i % len(self.base)]


@pytest.fixture
def slow(demo):
    return Slow(demo[1], 120)


def test_the_embedding_opens_at_once_and_its_map_equals_the_functions(demo, slow):
    model = demo[0]
    view = EmbeddingExplorer(model, slow, method="tsne", progress=False)  # returns, gate shut
    try:
        assert view.running and view.features is None and view.status == "reading the dataset…"
        frames = []
        view.observe(lambda change: frames.append(change["new"]), names=["points"])
        statuses = []
        view.observe(lambda change: statuses.append(change["new"]), names=["status"])
        slow.gate.set()
        view.wait(120)
        assert not view.running and view.status == "t-SNE map" and view.progress == 1.0
        assert any("/ 120 images" in s and "left" in s for s in statuses), statuses
        expected = feature_pass(model, slow, progress=False)
        np.testing.assert_array_equal(view.features.features, expected.features)
        # PCA at once, then the t-SNE as it is optimised, then the final map
        assert len(frames) >= 3
        final = embed(expected.features, method="tsne", random_state=0)
        np.testing.assert_array_equal(view.xy, final)
        np.testing.assert_array_equal(frames[-1], render.unit_square(final))
        whole = [f for f in frames if len(f) == len(slow)]  # previews have fewer points
        pca = render.unit_square(embed(expected.features, method="pca"))
        np.testing.assert_array_equal(whole[0], pca)
    finally:
        view.close()


def test_during_the_pass_the_map_shows_the_images_read_so_far(demo):
    # a preview every few seconds: the PCA of the features of the images read so far, with
    # their labels, so points can be seen (and clicked) before the pass ends
    slow = Slow(demo[1], 150, delay=0.03)  # about 4.5 s to read
    slow.gate.set()
    view = EmbeddingExplorer(demo[0], slow, method="pca", progress=False, batch_size=10)
    previews = []

    def record(change):
        if len(change["new"]) < len(slow):
            previews.append((change["new"], view.labels, view.caption))

    view.observe(record, names=["points"])
    try:
        view.wait(120)
        assert previews, "no map before the pass ended"
        expected = feature_pass(demo[0], slow, progress=False)
        for points, labels, caption in previews:
            n = len(points)
            assert 3 <= n < len(slow) and n % 10 == 0  # whole batches
            pca = render.unit_square(embed(expected.features[:n], method="pca"))
            np.testing.assert_array_equal(points, pca)
            np.testing.assert_array_equal(labels, expected.labels[:n])
            assert caption.startswith(f"{n:,} of {len(slow)} images so far")
        assert view.points.shape == (len(slow), 2) and view.status == "PCA map"
    finally:
        view.close()


def test_a_new_method_during_the_pass_supersedes_the_old_one(demo, slow):
    view = EmbeddingExplorer(demo[0], slow, method="tsne", progress=False)
    try:
        view.method = "pca"
        slow.gate.set()
        view.wait(120)
        assert view.status == "PCA map"
        np.testing.assert_array_equal(view.xy, embed(view.features.features, method="pca"))
    finally:
        view.close()


def test_closing_during_the_pass_stops_it(demo):
    slow = Slow(demo[1], 300, delay=0.02)  # about 6 s to read
    slow.gate.set()
    before = set(threading.enumerate())  # other tests' idle widgets may still have theirs
    view = EmbeddingExplorer(demo[0], slow, method="pca", progress=False, batch_size=16)
    time.sleep(0.5)
    t0 = time.perf_counter()
    view.close()
    assert time.perf_counter() - t0 < 3
    assert slow.reads < 300
    assert not [t for t in threading.enumerate() if t.name.startswith("cnnviz") and t not in before]


def test_top_patches_open_at_once_and_equal_the_function(demo, slow):
    model = demo[0]
    view = TopPatches(model, slow, "conv2", 3, progress=False)  # returns, gate shut
    try:
        assert view.running and view.top is None
        slow.gate.set()
        view.wait(120)
        expected = top_activations(model, slow, ["conv2"], 3, progress=False)["conv2"]
        np.testing.assert_array_equal(view.top.values, expected.values)
        assert not view.running and view.n_tiles > 0
    finally:
        view.close()


def test_the_explorer_opens_at_once_and_runs_the_model_over_the_dataset_once(demo):
    import copy

    model = copy.deepcopy(demo[0])
    seen = []  # images through the model (the user's hooks run on the views too)
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    slow = Slow(demo[1], 150)
    explorer = CNNExplorer(model, slow, method="pca", progress=False, batch_size=256)
    try:
        explorer.selected_index = 3  # works while the pass waits
        assert explorer.selected_info["index"] == 3
        assert explorer.selected_info["label"] == int(demo[1][3][1])
        assert explorer.embedding.running and explorer.top_patches.running
        before = sum(seen)
        slow.gate.set()
        explorer.wait(120)
        # one pass (one batch of 150) for the map's features and the top patches; beside it
        # only small batches (the selected image, the occlusion engine's probes, the top
        # patches' effective fields, a chunk at a time)
        assert seen.count(len(slow)) == 1 and sorted(seen)[-2] <= effective.CHUNK, seen
        assert sum(seen) - before < 2 * len(slow)
        assert explorer.top_patches.top is not None and explorer.embedding.features is not None
    finally:
        explorer.close()


def test_a_model_created_in_the_browser_gets_the_whole_state_on_request(demo, monkeypatch):
    # updates sent before the browser has built the model are dropped there: each model asks
    # once it exists (js/src/lib/sync.js), and the widget answers with its whole state
    from cnnviz_widgets.widgets._base import SYNC_REQUEST

    view = TopPatches(demo[0], demo[1], "conv2", 3, progress=False).wait()
    sent = []
    monkeypatch.setattr(view, "send_state", lambda key=None: sent.append(key))
    view._handle_custom_msg({"type": "something else"}, [])
    assert sent == []
    view._handle_custom_msg({"type": SYNC_REQUEST}, [])
    assert sent == [None]  # None: every synced trait
    view.close()


def test_in_a_kernel_background_results_change_traits_on_the_kernel_thread_only(demo, monkeypatch):
    # ipywidgets is not thread-safe (a worker's state change racing the kernel thread's can be
    # lost, leaving a view stuck): with a kernel's event loop running, every trait change of a
    # background job happens on that loop's thread, and the result equals the same view's
    # computed without a thread
    import asyncio

    from tornado.ioloop import IOLoop

    from cnnviz_widgets.widgets import _kernel

    model, dataset, _ = demo
    loop = IOLoop(make_current=False)
    monkeypatch.setattr(_kernel, "kernel_loop", lambda: loop)
    changed_on = []

    def record(change):
        changed_on.append((change["name"], threading.current_thread().name))

    async def run(view):
        view.observe(record)  # every trait
        for _ in range(1200):
            if not view.running and not _kernel._QUEUE:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError

    views = [
        EmbeddingExplorer(model, dataset, method="tsne", progress=False),
        TopPatches(model, dataset, "conv2", 3, progress=False),
    ]
    try:
        for view in views:
            loop.run_sync(lambda view=view: run(view))
        off = [(name, thread) for name, thread in changed_on if thread != "MainThread"]
        assert not off and len(changed_on) > 10, off
        emb = EmbeddingExplorer(model, dataset, method="tsne", progress=False, background=False)
        np.testing.assert_array_equal(views[0].points, emb.points)
        np.testing.assert_array_equal(views[0].labels, emb.labels)
        assert views[0].status == emb.status == "t-SNE map"
        assert views[0].thumb_pages == emb.thumb_pages
        tp = TopPatches(model, dataset, "conv2", 3, progress=False, background=False)
        assert views[1].atlas_png == tp.atlas_png and views[1].status == tp.status
        # blocked in wait() (the loop not running), the view still ends with the results
        again = TopPatches(model, dataset, "conv3", 2, progress=False).wait(60)
        assert (
            not again.running
            and again.atlas_png
            == TopPatches(model, dataset, "conv3", 2, background=False).atlas_png
        )
        views.append(again)
    finally:
        for view in views:
            view.close()
        loop.close(all_fds=True)


def test_interactive_work_on_a_model_pauses_its_background_work():
    from cnnviz_widgets.widgets._owner import ModelOwner
    from cnnviz_widgets.widgets._progress import Superseded

    priority = ModelOwner()
    priority.background_turn()  # nothing interactive: at once
    entered, release, turns = threading.Event(), threading.Event(), []

    def click():
        with priority.interactive():
            entered.set()
            release.wait(10)

    def background():
        priority.background_turn()
        turns.append(time.perf_counter())

    clicker = threading.Thread(target=click)
    clicker.start()
    entered.wait(10)
    worker = threading.Thread(target=background)
    worker.start()
    worker.join(0.5)
    assert worker.is_alive() and not turns  # it waits for the click's work
    t_release = time.perf_counter()
    release.set()
    worker.join(10)
    clicker.join(10)
    assert turns and turns[0] >= t_release
    # a superseded job stops waiting; the thread that does the interactive work never waits
    with priority.interactive():
        priority.background_turn()  # same thread: returns
        done = []

        def superseded():
            try:
                priority.background_turn(lambda: False)
            except Superseded:
                done.append(True)

        t = threading.Thread(target=superseded)
        t.start()
        t.join(5)
        assert done == [True]


def test_the_first_occlusion_map_is_computed_while_the_dataset_pass_waits(demo):
    # an image shown during a long pass over the dataset: the model's one thread computes the
    # coarse occlusion map after at most the batch the pass is in, the pass making no forward
    # meanwhile, then goes on with the pass
    from cnnviz_widgets import OcclusionMap

    model, dataset, _ = demo
    slow = Slow(dataset, 5000, delay=0.001)  # a forward every few ms, for up to ~30 s
    slow.gate.set()
    forwards = []  # (thread name, batch size, start time) of each forward of the model's views
    handle = model.register_forward_pre_hook(
        lambda m, args: forwards.append(
            (threading.current_thread().name, args[0].shape[0], time.perf_counter())
        )
    )
    view = EmbeddingExplorer(model, slow, method="pca", progress=False, batch_size=4)
    try:
        while sum(n == 4 for _, n, _ in forwards) < 5:
            time.sleep(0.01)
        # one map at stride 1 by the full recompute: 1,024 positions in forwards of 8 images
        occ = OcclusionMap(model, dataset[0][0], patch_size=8, strides=[1], method="full")
        asked = time.perf_counter()  # the job is queued at the end of the constructor
        occ.wait(60)
        assert view.running, "the pass ended before the map: nothing was tested"
        passes = [t for _, n, t in forwards if n == 4]
        maps = [t for _, n, t in forwards if n == 8]
        assert len(maps) == 1024 // 8
        first, last = min(maps), max(maps)
        assert sum(asked < t < first for t in passes) <= 1  # the batch under way, at most
        assert not [t for t in passes if first < t < last]  # the pass waits for the map
        threads = {name for name, n, _ in forwards if n in (4, 8)}
        assert threads == {view._lane.owner.thread.name}  # one thread runs the model's work
        while not any(t > last for t in (t for _, n, t in forwards if n == 4)):
            time.sleep(0.01)  # and the pass goes on
        occ.close()
    finally:
        handle.remove()
        view.close()


def test_thumbnails_come_from_the_pass_the_dataset_is_read_once(demo):
    from cnnviz_widgets.inspect import clear_feature_cache
    from cnnviz_widgets.inspect.dataset import display_image

    clear_feature_cache()
    slow = Slow(demo[1], 90, delay=0)
    slow.gate.set()
    view = EmbeddingExplorer(demo[0], slow, method="pca", progress=False).wait(60)
    try:
        first = slow.reads  # the pass (which made the thumbnails too) and a sample for the key
        assert len(slow) <= first < 2 * len(slow)
        images = [display_image(slow, i) for i in range(len(slow))]
        pages, shape, cols, per_page = render.sprite_pages(images, 32)
        assert view.thumb_pages == pages and view.thumb_shape == list(shape)
        assert (view.thumb_cols, view.thumbs_per_page) == (cols, per_page)
        # features from the cache: no pass runs, the thumbnails are read (the same ones)
        before = slow.reads
        again = EmbeddingExplorer(demo[0], slow, method="pca", progress=False).wait(60)
        assert again.thumb_pages == pages
        assert abs((slow.reads - before) - first) <= 1  # the key's sample, one read per image
        again.close()
    finally:
        view.close()


def test_an_occlusion_job_superseded_while_it_waits_its_turn_ends_quietly(demo, caplog):
    import logging

    from cnnviz_widgets import OcclusionMap
    from cnnviz_widgets.widgets._owner import owner_of

    model, dataset, _ = demo
    occ = None
    with owner_of(model).interactive():  # a click being handled: finer maps wait
        occ = OcclusionMap(model, dataset[0][0], patch_size=8, strides=[8, 4])
        deadline = time.monotonic() + 30
        while not occ._lane.busy or not occ.results:  # the coarse map, then waiting
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)
        assert len(occ.results) == 1  # the finer map waits for the interactive work
        with caplog.at_level(logging.ERROR):
            occ.target = (occ.target + 1) % 10  # supersedes the waiting job
    result = occ.wait(60)
    assert result.target == occ.target and result.stride == (4, 4)
    assert not [r for r in caplog.records if "background job failed" in r.getMessage()]
    occ.close()
