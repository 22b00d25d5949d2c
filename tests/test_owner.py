"""The model owner's one worker: lanes, who goes first, superseding, closing (widgets/_owner.py).
Pure threading, no model: the widgets' own tests check the same on real jobs."""

from __future__ import annotations

import threading
import time

import pytest

from cnnviz_widgets.widgets._owner import ModelOwner
from cnnviz_widgets.widgets._progress import Superseded


def until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_interactive_work_runs_at_the_next_turn_of_a_background_job_and_background_work_queues():
    owner = ModelOwner("t")
    bg, click, other = owner.lane("bg"), owner.lane("click"), owner.lane("other")
    events, threads = [], set()
    release = threading.Event()

    def background(is_current):
        threads.add(threading.current_thread())
        for step in range(6):
            events.append(("bg", step))
            if step == 2:
                release.wait(10)
            owner.background_turn(is_current)

    def job(name):
        def run(is_current):
            threads.add(threading.current_thread())
            events.append((name, None))

        return run

    bg.submit(background)
    until(lambda: ("bg", 2) in events)
    other.submit(job("other"))  # background: after the running background job
    click.submit(job("click"), interactive=True)  # at the running job's next turn
    release.set()
    for lane in (bg, click, other):
        assert lane.wait(10)
    names = [name if step is None else f"bg{step}" for name, step in events]
    assert names == ["bg0", "bg1", "bg2", "click", "bg3", "bg4", "bg5", "other"]
    assert len(threads) == 1 and threads != {threading.current_thread()}
    owner.close()


def test_a_newer_job_supersedes_the_running_one_and_errors_stay_with_their_lane():
    owner = ModelOwner("t")
    lane, fine = owner.lane("a"), owner.lane("b")
    started, seen = threading.Event(), []

    def long(is_current):
        started.set()
        while is_current():
            time.sleep(0.005)
        seen.append("stopped")
        raise Superseded

    def fails(is_current):
        raise ValueError("boom")

    lane.submit(long)
    started.wait(10)
    lane.submit(fails)
    assert lane.wait(10)
    assert seen == ["stopped"]
    assert isinstance(lane.last_error, ValueError)
    fine.submit(lambda is_current: seen.append("b"))
    assert fine.wait(10) and fine.last_error is None and seen[-1] == "b"
    lane.submit(lambda is_current: None)  # the lane's next success clears its error
    assert lane.wait(10) and lane.last_error is None
    owner.close()


def test_a_superseded_job_runs_no_interactive_job_at_its_turn():
    owner = ModelOwner("t")
    bg, click = owner.lane("bg"), owner.lane("click")
    started, stale = threading.Event(), threading.Event()
    order = []

    def background(is_current):
        started.set()
        stale.wait(10)
        try:
            owner.background_turn(is_current)
        except Superseded:
            order.append("superseded")
            raise

    bg.submit(background)
    started.wait(10)
    click.submit(lambda is_current: order.append("click"), interactive=True)
    bg.submit(lambda is_current: order.append("bg again"))  # the running job is stale now
    stale.set()
    for lane in (bg, click):
        assert lane.wait(10)
    # the stale job stopped at its turn without running the click under it; the thread then
    # took the interactive job first
    assert order == ["superseded", "click", "bg again"]
    owner.close()


def test_closing_the_last_lane_ends_the_thread_and_a_closed_lane_takes_no_job():
    owner = ModelOwner("t")
    a, b = owner.lane("a"), owner.lane("b")
    a.submit(lambda is_current: None)
    assert a.wait(10)
    thread = owner.thread
    assert thread is not None and thread.is_alive()
    a.close()
    assert thread.is_alive()  # b is still open: the thread stays for it
    running = threading.Event()

    def until_closed(is_current):
        running.set()
        while is_current():
            time.sleep(0.005)

    b.submit(until_closed)
    running.wait(10)
    b.close()  # supersedes the running job and ends the thread
    thread.join(10)
    assert not thread.is_alive() and owner.thread is None
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(lambda is_current: None)


def test_closing_a_lane_whose_job_is_only_queued_returns_at_once():
    owner = ModelOwner("t")
    busy, queued = owner.lane("busy"), owner.lane("queued")
    started, release = threading.Event(), threading.Event()

    def hold(is_current):
        started.set()
        release.wait(10)

    busy.submit(hold)
    started.wait(10)
    queued.submit(lambda is_current: None)  # waits behind `hold`
    t0 = time.perf_counter()
    queued.close()
    assert time.perf_counter() - t0 < 1 and not queued.busy
    release.set()
    assert busy.wait(10)
    owner.close()


def test_the_rest_of_a_job_queues_behind_background_work_already_waiting():
    # the explorer opens: the coarse occlusion map first, then the dataset pass that makes the
    # first scatter, then the finer maps (handed on with `then`); a superseded job's rest is
    # dropped
    owner = ModelOwner("t")
    occ, emb = owner.lane("occ"), owner.lane("emb")
    order, started, gate = [], threading.Event(), threading.Event()

    def coarse(ticket):
        started.set()
        gate.wait(10)  # the pass is queued meanwhile
        order.append("coarse")
        ticket.then(lambda t: order.append("fine"))

    occ.submit(coarse, interactive=True)
    started.wait(10)
    emb.submit(lambda t: order.append("pass"))
    gate.set()
    assert occ.wait(10) and emb.wait(10)
    assert order == ["coarse", "pass", "fine"]

    started.clear()
    gate.clear()
    occ.submit(coarse, interactive=True)
    started.wait(10)
    occ.submit(lambda t: order.append("newer"))  # supersedes `coarse` before it hands on
    gate.set()
    assert occ.wait(10)
    assert order[3:] == ["coarse", "newer"]  # no "fine": the rest of a stale job is dropped
    owner.close()
