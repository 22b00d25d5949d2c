"""The base of every widget here: anywidget, plus the state re-sent when the browser asks.

State changes sent right after a widget is created can reach the browser before its model
exists there (the front-end builds a model asynchronously after the comm opens, and drops
messages for a model it does not have yet). A background job that finishes quickly (a cached
dataset pass) would leave the view at its first state for ever. So each model, once created in
the browser, asks for the whole state once (`initialize` in js/src/lib/sync.js) and gets it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anywidget

from . import _kernel

SYNC_REQUEST = "cnnviz-sync"


class Widget(anywidget.AnyWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_msg(_resend_state)

    _closed = False

    def _post(self, fn: Callable[[], None], is_current: Callable[[], bool]) -> None:
        """Set traits from a background job: `fn` runs on the kernel's thread (see _kernel.py),
        unless the job is superseded or the widget closed by then."""
        _kernel.post(fn, lambda: is_current() and not self._closed)

    def _set(self, **traits) -> None:
        """Set `traits` together: the view gets them in one message."""
        with self.hold_sync():
            for name, value in traits.items():
                setattr(self, name, value)

    def _wait_lane(self, timeout: float | None, what: str) -> None:
        """Block until the widget's background work (its `_lane` on the model's thread, see
        `_owner.py`) is done and its results are in the traits; re-raise its last job's error;
        `TimeoutError` naming `what` after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._lane.wait(left):
                raise TimeoutError(f"{what} after {timeout} s")
            if not _kernel.drain():  # a result shown can start more work (a new ranking)
                break
        if self._lane.last_error is not None:
            raise self._lane.last_error

    def close(self) -> None:
        """Close the widget and end its background work, if it has any."""
        self._closed = True
        lane = getattr(self, "_lane", None)  # absent when __init__ raised before it
        if lane is not None:
            lane.close()
        super().close()


def _resend_state(widget: Widget, content, buffers) -> None:
    if isinstance(content, dict) and content.get("type") == SYNC_REQUEST:
        widget.send_state()
