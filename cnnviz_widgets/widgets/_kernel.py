"""The one place where background results reach traits: the kernel's own thread.

ipywidgets is not thread-safe. A widget's pending-state set (`hold_sync`) and its property lock
are shared by every thread, so a worker setting traits while the kernel thread handles a message
from the browser (a click) or sends state itself can lose an update for good: a view stuck at
its last progress line while the job is done. So a background job never sets traits itself: it
hands a function that does to `post`, which runs it on the thread of the kernel's event loop,
in order, and skips it if its job has been superseded by then. `drain` runs what is queued when
that thread is blocked in a widget's `wait()`.

Without a running kernel (a script, a test, marimo's runtime) there is no event loop to post to
and no comm to race with: the function runs at once, on the calling thread.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

_QUEUE: collections.deque[tuple[Callable[[], None], Callable[[], bool]]] = collections.deque()
_LOCK = threading.RLock()
_scheduled = False


def _always() -> bool:
    return True


def kernel_loop():
    """The running IPython kernel's event loop (tornado), or None outside a kernel."""
    try:
        from ipykernel.kernelbase import Kernel
    except ImportError:
        return None
    if not Kernel.initialized():
        return None
    return getattr(Kernel.instance(), "io_loop", None)


def on_kernel_thread() -> bool:
    """Whether the caller is the thread that runs cells and handles the browser's messages."""
    return threading.current_thread() is threading.main_thread()


def post(fn: Callable[[], None], is_current: Callable[[], bool] = _always) -> None:
    """Run `fn` (which sets traits) on the kernel's thread, after what was posted before it,
    unless `is_current()` is False by then. On that thread, or without a kernel, it runs now."""
    global _scheduled
    loop = kernel_loop()
    if loop is None or on_kernel_thread():
        if loop is not None:
            drain()  # older results first
        if is_current():
            fn()
        return
    with _LOCK:
        _QUEUE.append((fn, is_current))
        schedule, _scheduled = not _scheduled, True
    if schedule:
        loop.add_callback(drain)  # thread-safe


def drain() -> int:
    """Run every posted function (on the kernel's thread only; elsewhere nothing happens).
    Returns how many were taken from the queue."""
    global _scheduled
    if not on_kernel_thread():
        return 0
    taken = 0
    while True:
        with _LOCK:
            if not _QUEUE:
                _scheduled = False
                return taken
            fn, is_current = _QUEUE.popleft()
        taken += 1
        if is_current():
            try:
                fn()
            except Exception:  # one view's failure must not stop the others' updates
                log.exception("cnnviz: a background result could not be shown")
