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


def _resend_state(widget: Widget, content, buffers) -> None:
    if isinstance(content, dict) and content.get("type") == SYNC_REQUEST:
        widget.send_state()
