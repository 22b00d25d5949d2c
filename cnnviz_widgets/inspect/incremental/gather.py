"""Windows of a batch, read from a node's base map: the hot path of the engine.

The base map is kept as a padded, channels-last row table (Hp * Wp, C) (zeros for convolutions
and average pooling, -inf for max pooling, extra rows at the bottom/right for ceil_mode). A
batch's updated rectangles are appended as B * h * w more rows, and one integer index (B, wh, ww)
says, for every window pixel, whether it comes from the base or from the update: a single
`index_select` builds every window of the batch, no Python loop per position. The windows come
out channels-last, the layout oneDNN/cuDNN convolutions like best.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["Rows", "crop"]


class Rows:
    """A node's base map as a padded channels-last row table plus room for the updates."""

    def __init__(self, base: torch.Tensor, pads: tuple[int, int, int, int], value: float) -> None:
        pt, pb, pl, pr = pads
        x = base
        if any(pads):
            x = F.pad(base, (pl, pr, pt, pb), value=value)
        _, c, hp, wp = x.shape
        self.rows = x[0].permute(1, 2, 0).reshape(hp * wp, c).contiguous()
        self.mbase = hp * wp
        self.hp, self.wp, self.c = hp, wp, c
        self.pt, self.pl = pt, pl
        self.buf: torch.Tensor | None = None

    def table(self, n_upd: int, dtype: torch.dtype) -> torch.Tensor:
        """The base rows followed by room for `n_upd` update rows (a buffer kept for reuse)."""
        need = self.mbase + n_upd
        buf = self.buf
        if buf is None or buf.shape[0] < need or buf.dtype != dtype:
            buf = torch.empty((need, self.c), dtype=dtype, device=self.rows.device)
            buf[: self.mbase].copy_(self.rows)
            self.buf = buf
        return buf[:need]

    def gather(
        self,
        upd: torch.Tensor | None,
        iy: torch.Tensor | None,
        ix: torch.Tensor | None,
        wy: torch.Tensor,
        wx: torch.Tensor,
        wh: int,
        ww: int,
    ) -> torch.Tensor:
        """Windows (B, C, wh, ww), channels-last, at padded offsets (wy, wx).

        ``upd`` (B, C, ih, iw) at unpadded offsets (iy, ix) overrides the base where it lies.
        """
        dev = self.rows.device
        b = wy.shape[0]
        ys = wy[:, None] + torch.arange(wh, device=dev)
        xs = wx[:, None] + torch.arange(ww, device=dev)
        idx = ys[:, :, None] * self.wp + xs[:, None, :]
        if upd is None:
            src = self.rows
        else:
            ih, iw = upd.shape[2], upd.shape[3]
            n = b * ih * iw
            src = self.table(n, self.rows.dtype)
            src[self.mbase :].copy_(upd.permute(0, 2, 3, 1).reshape(n, self.c))
            ry = ys - (iy + self.pt)[:, None]
            rx = xs - (ix + self.pl)[:, None]
            iny = (ry >= 0) & (ry < ih)
            inx = (rx >= 0) & (rx < iw)
            bi = torch.arange(b, device=dev)[:, None] * ih
            uidx = self.mbase + (bi + ry)[:, :, None] * iw + rx[:, None, :]
            idx = torch.where(iny[:, :, None] & inx[:, None, :], uidx, idx)
        out = src.index_select(0, idx.reshape(-1))
        return out.view(b, wh, ww, self.c).permute(0, 3, 1, 2)

    def materialize(
        self, upd: torch.Tensor | None, oy: torch.Tensor, ox: torch.Tensor, b: int
    ) -> torch.Tensor:
        """``b`` copies of the (unpadded) base map with ``upd`` pasted at (oy, ox)."""
        assert self.mbase == self.hp * self.wp and self.pt == 0 and self.pl == 0
        dev = self.rows.device
        hw = self.mbase
        full = self.rows.repeat(b, 1)
        if upd is not None:
            h, w = upd.shape[2], upd.shape[3]
            ys = oy[:, None] + torch.arange(h, device=dev)
            xs = ox[:, None] + torch.arange(w, device=dev)
            dest = (torch.arange(b, device=dev) * hw)[:, None, None] + (
                ys[:, :, None] * self.wp + xs[:, None, :]
            )
            src = upd.permute(0, 2, 3, 1).reshape(-1, self.c).to(full.dtype)
            full.index_copy_(0, dest.reshape(-1), src)
        return full.view(b, self.hp, self.wp, self.c).permute(0, 3, 1, 2)


def crop(m: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 1, h, w) crops of an (H, W) map at offsets (oy, ox)."""
    dev = m.device
    ys = oy[:, None] + torch.arange(h, device=dev)
    xs = ox[:, None] + torch.arange(w, device=dev)
    return m[ys[:, :, None], xs[:, None, :]].unsqueeze(1)
