"""The base of every widget here: anywidget, its keywords checked, its state re-sent when the
browser asks, and its export (`to_html`, `save_png`).

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

import anywidget
import numpy as np

from .. import export, render

SYNC_REQUEST = "cnnviz-sync"


class Widget(anywidget.AnyWidget):
    def __new__(cls, *args, **kwargs):
        check_keywords(cls, kwargs)  # before any work: ipywidgets would drop it with a warning
        return super().__new__(cls, *args, **kwargs)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_msg(_resend_state)

    def _set(self, **traits) -> None:
        """Set `traits` together: the view gets them in one message."""
        with self.hold_sync():
            for name, value in traits.items():
                setattr(self, name, value)

    def to_html(self, path=None, *, title=None) -> str:
        """This view as one self-contained HTML page (see `cnnviz_widgets.export.to_html`)."""
        return export.to_html(self, path, title=title)

    def save_png(self, path) -> None:
        """Save the view as the browser draws it (`_png_image`) as a PNG file."""
        render.save_png(self._png_image(), path)

    def _png_image(self) -> np.ndarray:
        """The view as an RGB or gray uint8 image (what `save_png` writes)."""
        raise NotImplementedError(f"{type(self).__name__} has no image of its own to save")


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
