"""Widgets as panels of one composite widget: their synced traits live on the host's model.

A composite (CNNExplorer) builds its panels from the ordinary widget classes, but each panel is
*detached*: it opens no comm of its own. Every synced trait `name` of panel `prefix` is mirrored
by a host trait `<prefix>__<name>`; changes made in Python (by the panel's own code, or the
results of its background jobs, on the kernel's thread) are pushed to the host, grouped as the
panel's `hold_sync` groups them, and
changes arriving from the browser on the host are set on the panel. In the browser, a proxy
model maps `get("name")` to `get("<prefix>__name")`, so each widget's own view renders the
panel unchanged. One model, one comm and one copy of the JS bundle for the whole composite.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import contextmanager

import anywidget
import traitlets

log = logging.getLogger(__name__)

SEP = "__"
# per-instance anywidget traits and everything DOMWidget/AnyWidget sync for every widget
_BASE = set(anywidget.AnyWidget.class_traits(sync=True)) | {"_esm", "_css", "_anywidget_id"}


def panel_keys(cls: type) -> list[str]:
    """The synced traits a widget class adds to AnyWidget's: the ones its view reads."""
    return sorted(set(cls.class_traits(sync=True)) - _BASE)


def _from_json(value, widget):
    """Binary values sent by the browser arrive as memoryview."""
    return bytes(value) if isinstance(value, memoryview) else value


def host_traits(panels: dict[str, type]) -> dict[str, traitlets.TraitType]:
    """One untyped synced trait per panel trait; the panel's own trait validates the value."""
    return {
        f"{prefix}{SEP}{key}": traitlets.Any(None, allow_none=True).tag(
            sync=True, from_json=_from_json
        )
        for prefix, cls in panels.items()
        for key in panel_keys(cls)
    }


class DetachedMixin:
    """Put before a widget class: the widget opens no comm and reports trait changes instead.

    `_push(keys)` (set by the host) receives the names of changed synced traits: at once, or
    when the outermost `hold_sync` block ends, so values the view reads together arrive in one
    message.
    """

    _push: Callable[[set[str]], None] | None = None

    def open(self):  # no comm: the host widget carries the state
        pass

    def _pending_keys(self) -> set[str]:
        pending = self.__dict__.get("_cnnviz_pending")
        if pending is None:
            pending = self.__dict__["_cnnviz_pending"] = set()
        return pending

    def notify_change(self, change):
        name = change["name"]
        if self._push is not None and name in self._panel_keys:
            if self._holding_sync:
                self._pending_keys().add(name)
            else:
                self._push({name})
        super().notify_change(change)

    @contextmanager
    def hold_sync(self):
        if self._holding_sync:
            yield
            return
        self._holding_sync = True
        try:
            yield
        finally:
            self._holding_sync = False
            pending = self._pending_keys()
            keys = set(pending)
            pending.clear()
            if keys and self._push is not None:
                self._push(keys)


_DETACHED: dict[type, type] = {}


def detached(cls: type) -> type:
    """`cls` as a panel class (cached): same behaviour, no comm."""
    if cls not in _DETACHED:
        _DETACHED[cls] = type(
            f"Detached{cls.__name__}",
            (DetachedMixin, cls),
            {"_panel_keys": frozenset(panel_keys(cls)), "__module__": __name__},
        )
    return _DETACHED[cls]


class PanelHost:
    """Mixin for the composite: attaches detached panels and mirrors their traits both ways."""

    @contextmanager
    def batch(self):
        """Changes made inside reach the browser as one message. (Background jobs change
        their panels' traits on the kernel's thread, through `_kernel.post`, so no push from
        another thread can land in the middle of one.)"""
        with self.hold_sync():
            yield

    def _attach(self, prefix: str, panel) -> None:
        keys = sorted(panel._panel_keys)
        self._panels = {**getattr(self, "_panels", {}), prefix: panel}

        def push(names: Iterable[str]) -> None:
            with self.batch():
                for name in names:
                    setattr(self, f"{prefix}{SEP}{name}", getattr(panel, name))

        panel._push = push
        push(keys)
        self.observe(self._from_browser, names=[f"{prefix}{SEP}{k}" for k in keys])

    def _from_browser(self, change) -> None:
        prefix, _, name = change["name"].partition(SEP)
        panel = self._panels[prefix]
        value = change["new"]
        current = getattr(panel, name)
        if value is current or _same(value, current):
            return  # the echo of a push
        try:
            setattr(panel, name, value)
        except traitlets.TraitError as err:
            log.warning("%s.%s: %s", prefix, name, err)
            self.set_trait(change["name"], current)  # show the panel's value again


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. arrays: never equal here, so set it
        return False
