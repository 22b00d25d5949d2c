"""One lock between torch.fx tracing and model forwards on background threads.

`torch.fx` tracing patches `nn.Module.__call__` for the whole process while it runs: a module
called from another thread at that moment is routed into the tracer and fails ("module is not
installed as a submodule"). Tracing holds FX_LOCK, and a background job (the occlusion worker)
holds it around each batch it computes, so the two never overlap; the main thread waits at
most one batch.
"""

from __future__ import annotations

import threading

FX_LOCK = threading.RLock()
