"""The base of every widget here: anywidget, plus the state re-sent when the browser asks.

State changes sent right after a widget is created can reach the browser before its model
exists there (the front-end builds a model asynchronously after the comm opens, and drops
messages for a model it does not have yet). A background job that finishes quickly (a cached
dataset pass) would leave the view at its first state for ever. So each model, once created in
the browser, asks for the whole state once (`initialize` in js/src/lib/sync.js) and gets it.
"""

from __future__ import annotations

import anywidget

SYNC_REQUEST = "cnnviz-sync"


class Widget(anywidget.AnyWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_msg(_resend_state)

    def _wait_worker(self, timeout: float | None, what: str) -> None:
        """Block until the widget's background worker (`_worker`) is idle; re-raise its last
        job's error; `TimeoutError` naming `what` after `timeout` seconds."""
        if not self._worker.wait(timeout):
            raise TimeoutError(f"{what} after {timeout} s")
        if self._worker.last_error is not None:
            raise self._worker.last_error

    def close(self) -> None:
        """Close the widget and end its background work, if it has any."""
        worker = getattr(self, "_worker", None)  # absent when __init__ raised before it
        if worker is not None:
            worker.close()
        super().close()


def _resend_state(widget: Widget, content, buffers) -> None:
    if isinstance(content, dict) and content.get("type") == SYNC_REQUEST:
        widget.send_state()
