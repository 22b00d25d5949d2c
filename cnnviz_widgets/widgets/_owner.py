"""Per model, one owner: what is derived from its structure, and who goes first.

Every widget on the same model shares one `ModelOwner` (`owner_of(model)`, weakly keyed: it
goes with the model).

What depends only on the model's structure and the input's shape (the layer catalogue, the
receptive fields, the layer picker's choices) is computed once and shared (`derived`): an
explorer used to trace the model for them three times over. The key includes the identity of
every module, parameter and buffer, so a replaced module is a new structure; in-place weight
updates change none of these geometric facts.

Interactive work (the feature maps of a clicked image, the first, coarse
occlusion map) runs inside `interactive()`; background work (the pass over the dataset, the
finer occlusion maps) calls `background_turn()` between steps, which waits while interactive
work runs. So a click during a long dataset pass is answered at the speed of an idle machine,
less the one batch the pass is in the middle of, instead of sharing the cores with the pass.
"""

from __future__ import annotations

import collections
import copy
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ._progress import Superseded

#: how often a waiting background job checks whether it is still wanted (seconds)
POLL_S = 0.1
#: derived results kept per model (a few layers' worth of input shapes)
MAX_DERIVED = 16
T = TypeVar("T")
_MISSING = object()


class ModelOwner:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._threads: collections.Counter[int] = collections.Counter()  # inside interactive()
        self._derived: dict[tuple, object] = {}
        self._derived_lock = threading.Lock()

    def derived(self, model, key: tuple, compute: Callable[[], T]) -> T:
        """`compute()` once per (`key`, the model's structure); the last few are kept."""
        full = (*key, structure_key(model))
        with self._derived_lock:
            found = self._derived.get(full, _MISSING)
        if found is _MISSING:
            found = compute()
            with self._derived_lock:
                self._derived[full] = found
                while len(self._derived) > MAX_DERIVED:
                    del self._derived[next(iter(self._derived))]
        return copy.copy(found)  # a list or dict of its own: a caller's change stays its own

    @contextmanager
    def interactive(self) -> Iterator[None]:
        """Background work of this model pauses at its next step until the block ends."""
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
        """Wait while interactive work runs; raise `Superseded` if `is_current()` turns False
        meanwhile. Called from the thread that runs interactive work, it returns at once (that
        work is this thread's own, and waiting for it would never end)."""
        me = threading.get_ident()
        with self._cv:
            while self._threads and me not in self._threads:
                if is_current is not None and not is_current():
                    raise Superseded
                self._cv.wait(POLL_S)
        if is_current is not None and not is_current():  # superseded while it waited
            raise Superseded


_OWNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def owner_of(model) -> ModelOwner:
    """The one `ModelOwner` of `model` (created on first use)."""
    with _LOCK:
        found = _OWNERS.get(model)
        if found is None:
            found = _OWNERS[model] = ModelOwner()
        return found


def structure_key(model) -> tuple:
    """The identity of every module, parameter and buffer of `model` (not their values)."""
    parts = itertools.chain(model.modules(), model.parameters(), model.buffers())
    return tuple(map(id, parts))


def catalogue_of(model, image, device=None) -> list:
    """`layer_catalogue(model, image)`, once per model structure and input shape."""
    from ..inspect import layer_catalogue

    key = ("catalogue", tuple(image.shape[-3:]))
    return owner_of(model).derived(model, key, lambda: layer_catalogue(model, image, device=device))


def fields_of(model, image) -> dict:
    """Every layer's receptive field at `image`'s shape, once per model structure and shape."""
    from ..inspect.receptive import receptive_fields

    c, h, w = image.shape[-3:]
    key = ("fields", (c, h, w))
    return owner_of(model).derived(model, key, lambda: receptive_fields(model, (h, w), channels=c))
