"""The base of every widget here: anywidget, plus the state re-sent when the browser asks.

State changes sent right after a widget is created can reach the browser before its model
exists there (the front-end builds a model asynchronously after the comm opens, and drops
messages for a model it does not have yet). A background job that finishes quickly (a cached
dataset pass) would leave the view at its first state for ever. So each model, once created in
the browser, asks for the whole state once (`initialize` in js/src/lib/sync.js) and gets it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import time
from collections.abc import Callable

import anywidget

from . import _kernel

SYNC_REQUEST = "cnnviz-sync"


class Widget(anywidget.AnyWidget):
    def __new__(cls, *args, **kwargs):
        check_keywords(cls, kwargs)  # before any work: ipywidgets would drop it with a warning
        return super().__new__(cls, *args, **kwargs)

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

    def _lanes(self) -> tuple:
        """The widget's lanes on the model's thread (see `_owner.py`): `_lane`, if it has one."""
        lane = getattr(self, "_lane", None)  # absent when __init__ raised before it
        return () if lane is None else (lane,)

    def _wait_lane(self, timeout: float | None, what: str) -> None:
        """Block until the widget's background work (its `_lanes()` on the model's thread, see
        `_owner.py`) is done and its results are in the traits; re-raise a lane's last job's
        error; `TimeoutError` naming `what` after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        lanes = self._lanes()
        while True:
            for lane in lanes:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not lane.wait(left):
                    raise TimeoutError(f"{what} after {timeout} s")
            # a result shown can start more work (a new ranking, a ranking's page)
            if not _kernel.drain() and not any(lane.busy for lane in lanes):
                break
        for lane in lanes:
            if lane.last_error is not None:
                raise lane.last_error

    def close(self) -> None:
        """Close the widget and end its background work, if it has any."""
        self._closed = True
        for lane in self._lanes():
            lane.close()
        super().close()


def _resend_state(widget: Widget, content, buffers) -> None:
    if isinstance(content, dict) and content.get("type") == SYNC_REQUEST:
        widget.send_state()


@functools.cache
def _keywords(cls: type) -> tuple[str, tuple[str, ...], frozenset[str]]:
    """(the widget's name, its `__init__`'s keywords, its traits' names)."""
    owner = next(c for c in cls.__mro__ if "__init__" in c.__dict__)  # not a panel's subclass
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = inspect.signature(owner.__init__).parameters.values()
    names = tuple(p.name for p in params if p.kind in kinds and p.name != "self")
    return owner.__name__, names, frozenset(cls.class_trait_names())


def closest(key: str, names) -> str | None:
    """The name in `names` `key` most likely misspells: by case, by spelling (difflib), or
    one of its `_`-separated parts (`top_K` -> `k`)."""
    lower = {n.lower(): n for n in names if not n.startswith("_")}
    found = difflib.get_close_matches(key.lower(), list(lower), n=1)
    parts = [p for p in key.lower().split("_") if p in lower]
    if found:
        return lower[found[0]]
    return lower[max(parts, key=len)] if parts else None


def check_keywords(cls: type, kwargs: dict) -> None:
    """Raise a TypeError naming a keyword `cls` neither takes nor has as a trait, and the
    closest valid one."""
    name, params, traits = _keywords(cls)
    for key in kwargs:
        if key in params or key in traits:
            continue
        close = closest(key, (*params, *sorted(traits)))
        hint = (
            f"did you mean {close!r}?"
            if close
            else f"it takes {', '.join(params)}, or a trait of the widget (e.g. layout)"
        )
        raise TypeError(f"{name} got an unexpected keyword {key!r}; {hint}")
