"""Widgets as panels of one composite widget: their synced traits live on the host's model.

A composite (CNNExplorer) builds its panels from the ordinary widget classes, but each panel is
*detached*: it opens no comm of its own. Every synced trait `name` of panel `prefix` is mirrored
by a host trait `<prefix>__<name>`; changes made in Python (by the panel's own code, or the
results of its background jobs, on the kernel's thread) are pushed to the host, grouped as the
panel's `hold_sync` groups them, and
changes arriving from the browser on the host are set on the panel. In the browser, a proxy
model maps `get("name")` to `get("<prefix>__name")`, so each widget's own view renders the
panel unchanged. One model, one comm and one copy of the JS bundle for the whole composite.

A selection several panels show (the layer, the selected channel, the target class) lives in
one host trait, not in a mirror per panel: `SHARED` names it per panel, the host trait is
validated by every panel that shares it, and the panels' own traits follow it. The browser's
proxy reads the mapping from the host's `panel_links` trait.
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


def host_traits(
    panels: dict[str, type], shared: dict[str, dict[str, str]] | None = None
) -> dict[str, traitlets.TraitType]:
    """One untyped synced trait per panel trait that is not `shared` (panel prefix -> panel
    trait -> host trait); the panel's own trait validates the value. And `panel_links`: the
    shared mapping, for the browser's proxies."""
    shared = shared or {}
    traits: dict[str, traitlets.TraitType] = {
        f"{prefix}{SEP}{key}": traitlets.Any(None, allow_none=True).tag(
            sync=True, from_json=_from_json
        )
        for prefix, cls in panels.items()
        for key in panel_keys(cls)
        if key not in shared.get(prefix, {})
    }
    traits["panel_links"] = traitlets.Dict(shared).tag(sync=True)
    return traits


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
        shared = self.panel_links.get(prefix, {})
        keys = sorted(set(panel._panel_keys) - set(shared))
        self._panels = {**getattr(self, "_panels", {}), prefix: panel}

        def push(names: Iterable[str]) -> None:
            with self.batch():
                for name in names:
                    if name not in shared:  # a shared one reaches the host by `follow` below
                        setattr(self, f"{prefix}{SEP}{name}", getattr(panel, name))

        panel._push = push
        push(keys)
        self.observe(self._from_browser, names=[f"{prefix}{SEP}{k}" for k in keys])
        for name, host_name in shared.items():

            def follow(change, host_name=host_name):  # the panel changed it itself
                if getattr(self, host_name) != change["new"]:
                    setattr(self, host_name, change["new"])

            panel.observe(follow, names=[name])
            self.observe(self._to_panels, names=[host_name])

    def _sharing(self, host_name: str) -> list[tuple[object, str]]:
        """(panel, its trait) for each panel that shows the host trait `host_name`."""
        return [
            (self._panels[prefix], name)
            for prefix, links in self.panel_links.items()
            for name, shared_as in links.items()
            if shared_as == host_name and prefix in getattr(self, "_panels", {})
        ]

    def _check_shared(self, host_name: str, value):
        """`value` as every panel sharing `host_name` accepts it (their validators), or the
        first panel's TraitError."""
        for panel, name in self._sharing(host_name):
            value = panel.traits()[name]._validate(panel, value)
        return value

    def _to_panels(self, change) -> None:
        for panel, name in self._sharing(change["name"]):
            if getattr(panel, name) != change["new"]:
                setattr(panel, name, change["new"])

    def set_state(self, sync_data) -> None:
        """State from the browser: a shared selection a panel rejects is logged and put back
        (the browser gets the current value again), as for a mirrored trait."""
        shared = {h for links in self.panel_links.values() for h in links.values()}
        refused = []
        for key in shared & set(sync_data):
            try:
                self._check_shared(key, sync_data[key])
            except traitlets.TraitError as err:
                log.warning("%s: %s", key, err)
                refused.append(key)
        super().set_state({k: v for k, v in sync_data.items() if k not in refused})
        if refused:
            self.send_state(refused)

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
