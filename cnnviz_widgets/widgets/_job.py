"""The base of the widgets that work in the background: their lanes, and a job's state as traits.

A `JobWidget` submits its work to its model's thread through its lane (`_owner.py`): `running`,
`progress` and `status` show the job as it starts, reports progress and ends; a job that fails
ends with `status` "error: Type: message" and its error is re-raised by `wait()`; `close()`
ends the widget's lanes. Each widget says only what work it does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import traitlets

from . import _kernel
from ._base import Widget
from ._owner import Lane, Now, Superseded, Ticket, owner_of
from ._progress import PassProgress

#: `post(fn)`: set traits from a job (`fn` runs on the kernel's thread, see `_kernel.py`)
Post = Callable[[Callable[[], None]], None]


class JobWidget(Widget):
    """A widget whose work runs on its model's thread (see the module's docstring)."""

    status = traitlets.Unicode("").tag(sync=True)
    progress = traitlets.Float(0.0).tag(sync=True)
    running = traitlets.Bool(False).tag(sync=True)

    _closed = False
    #: False: jobs run in the caller's thread (`background=False`)
    _background = True
    #: what `wait()`'s TimeoutError says was not done
    _unfinished = "the background work was not finished"

    def _use_model(self, model, lane: str, background: bool = True) -> None:
        """`_owner`, the model's owner, and `_lane`, this widget's lane on its thread."""
        self._owner = owner_of(model)
        self._lane = self._owner.lane(lane)
        self._background = background

    def _submit_job(self, job: Callable[[Ticket | Now], None], *, interactive=False) -> None:
        """`job(ticket)` on the model's thread, or here and now without `_background`."""
        if self._background:
            self._lane.submit(job, interactive=interactive)
        else:
            job(Now())

    def _post(self, fn: Callable[[], None], is_current: Callable[[], bool]) -> None:
        """Set traits from a background job: `fn` runs on the kernel's thread (see _kernel.py),
        unless the job is superseded or the widget closed by then."""
        _kernel.post(fn, lambda: is_current() and not self._closed)

    def _guarded(self, ticket, work: Callable[[Post], None], *, ends_run: bool = True) -> None:
        """`work(post)` for the job holding `ticket` (`post` as `_post`). A superseded job ends
        quietly; an error ends it with its `status` (and `running` False, with `ends_run`) and
        is re-raised (the lane keeps it for `wait()`)."""

        def post(fn: Callable[[], None]) -> None:
            self._post(fn, ticket)

        try:
            work(post)
        except Superseded:
            return
        except Exception as err:
            status = f"error: {type(err).__name__}: {err}"
            end = {"status": status, **({"running": False} if ends_run else {})}
            post(lambda: self._set(**end))
            raise

    def _begin(self, **traits) -> None:
        """A job starts: `running`, `progress` 0 and `traits` (its `status`) in one message."""
        self._set(running=True, progress=0.0, **traits)

    def _show_progress(self, fraction: float, text: str) -> None:
        self._set(progress=fraction, status=text)

    def _pass_progress(self, ticket, post: Post) -> PassProgress:
        """A dataset pass's `progress`: shown by `_show_progress`; it stops the superseded job,
        and lets the model's interactive work go first between batches."""

        def show(fraction: float, text: str) -> None:
            post(lambda: self._show_progress(fraction, text))

        return PassProgress(show, ticket, turn=self._owner.background_turn)

    def _lanes(self) -> tuple[Lane, ...]:
        """The widget's lanes on the model's thread (`_lane` first; none if __init__ raised
        before them)."""
        return tuple(v for v in vars(self).values() if isinstance(v, Lane))

    def wait(self, timeout: float | None = None):
        """Block until the background work (on its `_lanes()`) is done and shown (the widget,
        for chaining); re-raises its error. `TimeoutError` after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        lanes = self._lanes()
        while True:
            for lane in lanes:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not lane.wait(left):
                    raise TimeoutError(f"{self._unfinished} after {timeout} s")
            # a result shown can start more work (a new ranking, a ranking's page)
            if not _kernel.drain() and not any(lane.busy for lane in lanes):
                break
        for lane in lanes:
            if lane.last_error is not None:
                raise lane.last_error
        return self

    def close(self) -> None:
        """Close the widget and end its background work."""
        self._closed = True
        for lane in self._lanes():
            lane.close()
        super().close()
