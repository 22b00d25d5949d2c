"""Tracing with torch.fx beside threads that run modules.

`torch.fx` tracing patches `nn.Module.__call__` and `__getattr__` for the whole process while it
runs: a module called from another thread at that moment is routed into the tracer and gets a
Proxy back (or fails: "module is not installed as a submodule"). `ThreadTracer` passes calls
from other threads straight to the real module. So a trace on one thread never touches another
thread's forward: a model owner's worker (widgets/_owner.py) running a batch, or the user's own
code (training in the next cell) while a widget traces in the background. And two traces never
overlap (`_TRACING`): each would install its patches over the other's and take them away in the
middle of it. This is the one thread guard in `inspect/`; nothing else here knows about threads.
"""

from __future__ import annotations

import threading
from typing import Any

from torch import fx, nn

_TRACING = threading.RLock()  # one trace at a time in the process (fx patches are global)


class ThreadTracer(fx.Tracer):
    """An fx.Tracer that records only the calls of the thread that runs `trace`."""

    _owner: int | None = None

    def trace(self, root, concrete_args=None):
        with _TRACING:
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
