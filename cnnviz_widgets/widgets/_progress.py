"""Progress of a dataset pass as a widget shows it: a fraction, images/s and time left."""

from __future__ import annotations

import time
from collections.abc import Callable

from ._owner import Superseded


class PassProgress:
    """A `dataset_pass(progress=...)` callback: calls `show(fraction, text)` at most every
    `every` seconds (and at the end), raises `Superseded` once `is_current()` is False, and
    after each batch waits for `turn(is_current)` (the model's interactive work goes first)."""

    def __init__(
        self,
        show: Callable[[float, str], None],
        is_current: Callable[[], bool],
        what: str = "images",
        every: float = 0.25,
        turn: Callable[[Callable[[], bool]], None] | None = None,
    ):
        self._show, self.is_current, self._what, self._every = show, is_current, what, every
        self._turn = turn
        self._t0 = time.perf_counter()
        self._last = -float("inf")

    def __call__(self, done: int, total: int | None) -> None:
        if not self.is_current():
            raise Superseded
        if self._turn is not None:
            paused = time.perf_counter()
            self._turn(self.is_current)
            self._t0 += time.perf_counter() - paused  # time given to other work is not the pass's
        now = time.perf_counter()
        if now - self._last < self._every and done != total:
            return
        self._last = now
        rate = done / max(now - self._t0, 1e-9)
        if total:
            left = (total - done) / rate if rate > 0 else float("inf")
            text = f"{done:,} / {total:,} {self._what} · {rate:,.0f}/s · {left:,.0f} s left"
            self._show(done / total, text)
        else:
            self._show(0.0, f"{done:,} {self._what} · {rate:,.0f}/s")


def pass_batch_size(model, device, batch_size: int | None) -> int:
    """`batch_size`, or the default of a pass a widget runs in the background: 256 images on a
    GPU, 32 on the CPU (where a batch of 256 ImageNet-size images takes a minute, so the
    progress bar would not move; smaller batches cost little there)."""
    if batch_size is not None:
        return batch_size
    from ..inspect.dataset import pick_device

    return 256 if pick_device(model, device).type == "cuda" else 32
