"""Per model, one owner: the one thread that runs the background work of its widgets.

Every widget on the same model shares one `ModelOwner` (`owner_of(model)`, weakly keyed: it
goes with the model).

**One worker.** Background work on a model (the pass over a dataset, t-SNE fed by it, the
occlusion maps) runs on the owner's one thread, never on two at once. Each widget submits its
work through a `Lane` of its own: a newer job on a lane supersedes the older one (its
`is_current()` turns False and it stops at its next step), `wait()` blocks until the lane is
idle, `close()` ends the lane, and the thread ends when no lane is open or after
`IDLE_EXIT_S` seconds without work.

**Who goes first.** A job is *interactive* (the first, coarse occlusion map of a clicked image,
a ranking read from the cache just filled) or *background*. The thread takes interactive jobs
first, then background jobs oldest first. A background job calls `background_turn()` between
its steps (a batch of the pass, a t-SNE iteration); on the owner's thread that runs the
interactive jobs queued meanwhile, there and then, before the background job goes on. A job
hands what is left of its work to a background job of its own lane with `is_current.then(...)`
(the finer occlusion maps after the coarse one, the t-SNE after the pass), which queues behind
the background work already waiting: the pass that makes the first scatter is not held up by
the finer maps of the image shown meanwhile. So a click during a long
dataset pass is answered after at most the batch the pass is in, at the speed of an idle
machine. Interactive work done on the kernel's own thread (the feature maps of a selection)
runs inside `interactive()`, and background jobs wait at their next turn until it ends.

The model itself never runs on two of our threads at once unless the kernel's thread does
interactive work beside a background job paused at its turn; both run eval-mode views that only
read the shared weights (`inspect/view.py`). Tracing is process-wide in torch.fx; the tracer
passes other threads' calls through (`inspect/_locks.py`), which also keeps the user's own
thread (training in the next cell) out of our traces.
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..inspect.predict import bound_source
from ..inspect.wrappers import unwrap

log = logging.getLogger(__name__)
Job = Callable[["Ticket"], None]

#: seconds the owner's thread waits for a new job before it ends (the next submit starts one)
IDLE_EXIT_S = 30.0
#: how often a waiting background job checks whether it is still wanted (seconds)
POLL_S = 0.1


class Superseded(Exception):
    """Raised inside a background job whose result nobody wants any more (a newer job exists,
    or the widget was closed): it ends the job quietly."""


class Ticket:
    """What a running job is given: `ticket()` is True while the job is still wanted (no newer
    job on its lane, the lane open); `then(job)` queues the rest of its work as a background
    job of the same lane (dropped if the lane has a newer job by then)."""

    def __init__(self, lane: Lane, generation: int):
        self._lane, self._generation = lane, generation

    def __call__(self) -> bool:
        return self._generation == self._lane._generation and not self._lane.closed

    def then(self, job: Job) -> None:
        self._lane.owner._then(self._lane, self._generation, job)


class Now:
    """A ticket for work run in the caller's own thread (a widget made with
    `background=False`): always current, and `then(job)` runs `job` at once."""

    def __call__(self) -> bool:
        return True

    def then(self, job: Job) -> None:
        job(self)


class Lane:
    """One widget's line of work on its model's thread: the newest job only."""

    def __init__(self, owner: ModelOwner, name: str):
        self.owner = owner
        self.name = name
        self.closed = False
        #: the error of the lane's last finished job (None if it succeeded)
        self.last_error: BaseException | None = None
        self._generation = 0
        self._job: tuple[int, Job, bool] | None = None  # (generation, job, interactive)
        self._running = 0  # jobs of this lane on the stack (a stale one may be under a new one)
        self._held = 0  # work done for this lane by another (see `hold`)
        self._idle = threading.Event()
        self._idle.set()

    def submit(self, job: Job, *, interactive: bool = False) -> None:
        """Queue `job` (called with its `Ticket`), superseding this lane's queued or running job."""
        self.owner._submit(self, job, interactive)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no job of this lane is queued or running; False on timeout."""
        return self._idle.wait(timeout)

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def hold(self) -> Callable[[BaseException | None], None]:
        """Keep the lane busy (`wait()` blocks) until the returned `release(error)` is called:
        for work another lane does for this one (CNNExplorer's one pass ranks the top patches).
        `error` becomes `last_error` unless a newer job came meanwhile; a second call is a no-op."""
        with self.owner._cv:
            self._held += 1
            self._idle.clear()
            generation, released = self._generation, []

        def release(error: BaseException | None = None) -> None:
            with self.owner._cv:
                if released:
                    return
                released.append(True)
                self._held -= 1
                if generation == self._generation:
                    self.last_error = error
                if self._job is None and not self._running and not self._held:
                    self._idle.set()
                self.owner._cv.notify_all()

        return release

    def close(self, timeout: float | None = 10) -> None:
        """Supersede this lane's job and wait (up to `timeout`) for it to stop at its next step;
        the owner's thread ends when this was its last open lane."""
        self.owner._close(self, timeout)


class ModelOwner:
    def __init__(self, name: str = "model") -> None:
        self.name = name
        self._cv = threading.Condition()
        self._threads: collections.Counter[int] = collections.Counter()  # inside interactive()
        self._queue: list[Lane] = []  # lanes with a job waiting, oldest first
        self._lanes: weakref.WeakSet[Lane] = weakref.WeakSet()  # open lanes
        self._thread: threading.Thread | None = None
        _LIVE.add(self)

    # ------------------------------------------------------------------ the one worker

    def lane(self, name: str) -> Lane:
        """A new lane for a widget's jobs (`name` shows in logs)."""
        lane = Lane(self, name)
        with self._cv:
            self._lanes.add(lane)
        return lane

    @property
    def thread(self) -> threading.Thread | None:
        """The worker thread, while it runs."""
        return self._thread

    def _submit(self, lane: Lane, job: Job, interactive: bool) -> None:
        with self._cv:
            if lane.closed:
                raise RuntimeError("this widget was closed; create a new one")
            lane._generation += 1
            lane._job = (lane._generation, job, interactive)
            lane._idle.clear()
            if lane in self._queue:
                self._queue.remove(lane)
            self._queue.append(lane)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=f"cnnviz-{self.name}", daemon=True
                )
                self._thread.start()
            self._cv.notify_all()

    def _then(self, lane: Lane, generation: int, job: Job) -> None:
        with self._cv:
            if generation != lane._generation or lane.closed:
                return  # superseded meanwhile: the newer job does its own work
            lane._job = (generation, job, False)
            lane._idle.clear()
            if lane in self._queue:
                self._queue.remove(lane)
            self._queue.append(lane)
            self._cv.notify_all()

    def _take(self, interactive_only: bool = False) -> tuple[Lane, int, Job, bool] | None:
        """The next job: the oldest interactive one, else (unless `interactive_only`) the
        oldest. Call with the condition held."""
        for wanted in (True, False):
            if not wanted and interactive_only:
                return None
            for lane in self._queue:
                if lane._job is not None and (lane._job[2] or not wanted):
                    self._queue.remove(lane)
                    generation, job, interactive = lane._job
                    lane._job = None
                    lane._running += 1
                    return lane, generation, job, interactive
        return None

    def _run(self, lane: Lane, generation: int, job: Job, interactive: bool) -> None:
        error = None
        ticket = Ticket(lane, generation)
        try:
            if not interactive:  # it starts once the kernel thread's interactive work is done
                self.background_turn(ticket)
            job(ticket)
        except Superseded:
            pass
        except BaseException as err:  # kept for wait() to re-raise, and logged
            error = err
            log.exception("cnnviz background job failed (%s)", lane.name)
        job = None  # the finished job (and the widget its closure holds) is not kept alive
        with self._cv:
            if generation == lane._generation:
                lane.last_error = error
            lane._running -= 1
            if lane._job is None and not lane._running and not lane._held:
                lane._idle.set()
            self._cv.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cv:
                deadline = time.monotonic() + IDLE_EXIT_S
                while (found := self._take()) is None and self._lanes:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                if found is None:
                    # no open lane, or idle for IDLE_EXIT_S: the thread ends (a submit starts
                    # another), so widgets the user forgets to close keep no thread
                    self._thread = None
                    return
            self._run(*found)
            found = None

    def _close(self, lane: Lane, timeout: float | None) -> None:
        with self._cv:
            lane.closed = True
            lane._generation += 1
            if lane._job is not None:
                lane._job = None
                self._queue.remove(lane)
            if not lane._running:  # nothing of it runs: idle now (else when its job stops)
                lane._idle.set()
            self._lanes.discard(lane)
            self._cv.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            lane._idle.set()
            return
        if self._lanes:  # other widgets still use the thread: wait for this lane's job only
            lane._idle.wait(timeout)
        else:
            thread.join(timeout)
        lane._idle.set()

    def close(self, timeout: float | None = 10) -> None:
        """Close every lane: running jobs stop at their next step and the thread ends."""
        for lane in list(self._lanes):
            lane.close(timeout)

    # ------------------------------------------------------------------ who goes first

    @contextmanager
    def interactive(self) -> Iterator[None]:
        """Background work of this model pauses at its next step until the block ends (for
        interactive work on a thread other than the owner's: the kernel's)."""
        me = threading.get_ident()
        with self._cv:
            self._threads[me] += 1
        try:
            yield
        finally:
            with self._cv:
                self._threads[me] -= 1
                if not self._threads[me]:
                    del self._threads[me]
                self._cv.notify_all()

    def background_turn(self, is_current: Callable[[], bool] | None = None) -> None:
        """A background job's step boundary. On the owner's thread, run the interactive jobs
        queued meanwhile; then wait while another thread does interactive work. Raises
        `Superseded` as soon as `is_current()` is False (a superseded job runs nothing more).
        On a thread doing interactive work itself, it never waits for that work."""
        me = threading.get_ident()
        if threading.current_thread() is self._thread:
            while True:
                if is_current is not None and not is_current():
                    raise Superseded
                with self._cv:
                    found = self._take(interactive_only=True)
                if found is None:
                    break
                self._run(*found)
                found = None
        with self._cv:
            while self._threads and me not in self._threads:
                if is_current is not None and not is_current():
                    raise Superseded
                self._cv.wait(POLL_S)
        if is_current is not None and not is_current():  # superseded while it waited
            raise Superseded


_LIVE: weakref.WeakSet[ModelOwner] = weakref.WeakSet()
_OWNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_OWNERS_LOCK = threading.Lock()


@atexit.register
def _close_all() -> None:
    """At interpreter exit, stop the jobs still running (they stop at their next step), so no
    thread is killed in the middle of native code."""
    for owner in list(_LIVE):
        owner.close(timeout=5)


def owner_of(model) -> ModelOwner:
    """The one `ModelOwner` of `model` (created on first use; a compiled or DataParallel
    model shares its module's, a `predict.bound_model` the user's model's)."""
    model = bound_source(unwrap(model))[0]
    with _OWNERS_LOCK:
        found = _OWNERS.get(model)
        if found is None:
            found = _OWNERS[model] = ModelOwner(type(model).__name__)
        return found
