"""Tracing with torch.fx beside threads that run the same model.

`torch.fx` tracing patches `nn.Module.__call__` and `__getattr__` for the whole process while it
runs: a module called from another thread at that moment is routed into the tracer and gets a
Proxy back (or fails: "module is not installed as a submodule"). `ThreadTracer` passes calls
from other threads straight to the real module, so a background job (the occlusion worker) is
never touched by a trace on the main thread. FX_LOCK is held by every trace and by the
occlusion worker around each batch it computes, as a second guard.
"""

from __future__ import annotations

import threading
from typing import Any

from torch import fx, nn

FX_LOCK = threading.RLock()


class ThreadTracer(fx.Tracer):
    """An fx.Tracer that records only the calls of the thread that runs `trace`."""

    _owner: int | None = None

    def trace(self, root, concrete_args=None):
        with FX_LOCK:
            self._owner = threading.get_ident()
            try:
                return super().trace(root, concrete_args)
            finally:
                self._owner = None

    def _foreign(self) -> bool:
        return threading.get_ident() != self._owner

    def call_module(self, m: nn.Module, forward, args: tuple, kwargs: dict) -> Any:
        if self._foreign():
            return forward(*args, **kwargs)  # another thread's forward: run it for real
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        if self._foreign():
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)
