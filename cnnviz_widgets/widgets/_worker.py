"""One background thread per widget that runs only the newest job."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable

log = logging.getLogger(__name__)
Job = Callable[[Callable[[], bool]], None]

#: seconds a worker thread waits for a new job before it ends (the next submit starts one)
IDLE_EXIT_S = 30.0


_LIVE: weakref.WeakSet[LatestWorker] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """At interpreter exit, stop the jobs still running (they stop at their next check), so no
    thread is killed in the middle of native code."""
    for worker in list(_LIVE):
        worker.close(timeout=5)


class LatestWorker:
    """Runs submitted jobs one at a time on a daemon thread; a newer job supersedes older ones.

    The thread starts with the first job and ends after `IDLE_EXIT_S` seconds without one, or at
    `close()`.
    A job is called with `is_current()`, which turns False as soon as a newer job is submitted,
    so it can stop between steps: a user clicking quickly never waits for stale work.
    """

    def __init__(self, name: str = "cnnviz-worker"):
        self._name = name
        self._cv = threading.Condition()
        self._pending: tuple[int, Job] | None = None
        self._generation = 0
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.last_error: BaseException | None = None
        _LIVE.add(self)

    def submit(self, job: Job) -> None:
        """Queue `job`, superseding whatever is queued or running."""
        with self._cv:
            if self._closed:
                raise RuntimeError("this widget was closed; create a new one")
            self._generation += 1
            self._pending = (self._generation, job)
            self._idle.clear()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cv.notify()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or running; False on timeout."""
        return self._idle.wait(timeout)

    def close(self, timeout: float | None = 10) -> None:
        """Supersede any job and end the thread (a running job stops at its next check)."""
        with self._cv:
            self._closed = True
            self._generation += 1
            self._pending = None
            self._cv.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._idle.set()

    def _loop(self) -> None:
        while True:
            with self._cv:
                if self._pending is None and not self._closed:
                    self._cv.wait(IDLE_EXIT_S)
                if self._closed or self._pending is None:
                    # closed, or idle for IDLE_EXIT_S: the thread ends (submit starts another),
                    # so a widget the user forgets to close keeps no thread
                    self._thread = None
                    return
                generation, job = self._pending
                self._pending = None
            try:
                job(lambda generation=generation: generation == self._generation)
                self.last_error = None
            except BaseException as err:  # kept for wait() to re-raise, and logged
                self.last_error = err
                log.exception("cnnviz background job failed")
            job = None  # the finished job (and the widget its closure holds) is not kept alive
            with self._cv:
                if self._pending is None:
                    self._idle.set()
