"""Per model, who goes first: what the user is looking at before what fills in behind it.

Every widget on the same model shares one `Priority` (`priority_of(model)`, weakly keyed: it
goes with the model). Interactive work (the feature maps of a clicked image, the first, coarse
occlusion map) runs inside `interactive()`; background work (the pass over the dataset, the
finer occlusion maps) calls `background_turn()` between steps, which waits while interactive
work runs. So a click during a long dataset pass is answered at the speed of an idle machine,
less the one batch the pass is in the middle of, instead of sharing the cores with the pass.
"""

from __future__ import annotations

import collections
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ._progress import Superseded

#: how often a waiting background job checks whether it is still wanted (seconds)
POLL_S = 0.1


class Priority:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._threads: collections.Counter[int] = collections.Counter()  # inside interactive()

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

    @property
    def busy(self) -> bool:
        """Whether interactive work is running now."""
        with self._cv:
            return bool(self._threads)


_PRIORITIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def priority_of(model) -> Priority:
    """The one `Priority` of `model` (created on first use)."""
    with _LOCK:
        found = _PRIORITIES.get(model)
        if found is None:
            found = _PRIORITIES[model] = Priority()
        return found
