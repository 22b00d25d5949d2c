"""What follows from a model's structure and an input's shape alone, computed once per model.

The layer catalogue, the receptive fields, the layer picker's choices and the occlusion engine's
graph are shared by every widget on the model (weakly keyed: they go with the model; a compiled,
DataParallel or `predict.bound_model` model shares its module's). The key includes the identity
of every module, parameter and buffer, so a replaced module is a new structure; in-place weight
updates change none of these geometric facts.
"""

from __future__ import annotations

import copy
import itertools
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

from ..inspect.predict import bound_source
from ..inspect.wrappers import unwrap

#: derived results kept per model (a few layers' worth of input shapes)
MAX_DERIVED = 16
T = TypeVar("T")
_MISSING = object()
_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {key: result}
_LOCK = threading.Lock()


def derived(model, key: tuple, compute: Callable[[], T]) -> T:
    """`compute()` once per (`key`, the model's structure); the last few are kept."""
    full = (*key, structure_key(model))
    with _LOCK:
        cache = _CACHES.setdefault(bound_source(unwrap(model))[0], {})
        found = cache.get(full, _MISSING)
    if found is _MISSING:
        found = compute()
        with _LOCK:
            cache[full] = found
            while len(cache) > MAX_DERIVED:
                del cache[next(iter(cache))]
    return copy.copy(found)  # a list or dict of its own: a caller's change stays its own


def structure_key(model) -> tuple:
    """The identity of every module, parameter and buffer of `model` (not their values), and
    what a `predict.bound_model` binds (its module ids may be a collected bind's)."""
    parts = itertools.chain(model.modules(), model.parameters(), model.buffers())
    return (*map(id, parts), *bound_source(model)[1])


def catalogue_of(model, image, device=None) -> list:
    """`layer_catalogue(model, image)`, once per model structure and input shape."""
    from ..inspect import layer_catalogue

    key = ("catalogue", tuple(image.shape[-3:]))
    return derived(model, key, lambda: layer_catalogue(model, image, device=device))


def fields_of(model, image) -> dict:
    """Every layer's receptive field at `image`'s shape, once per model structure and shape."""
    from ..inspect.receptive import receptive_fields

    c, h, w = image.shape[-3:]
    key = ("fields", (c, h, w))
    return derived(model, key, lambda: receptive_fields(model, (h, w), channels=c))
