"""The views drawn in Python as the browser draws them: what `save_png` writes.

A copy of the front end's drawing rules (js/): the tile sheets, the occlusion view (`viewScale`,
`cellEdges`, `lutIndex`) and the scatter map.
"""

from __future__ import annotations

import math

import numpy as np


def _round_half_up(x) -> np.ndarray:
    """Rounding as JavaScript's Math.round (halves up), which the browser views use."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


def tile_scale(tile_px: int, h: int, w: int) -> int:
    """Integer upscaling of a tile to about `tile_px` on its longer side (the tile grids' rule)."""
    return max(1, round(tile_px / max(h, w, 1)))


def tile_sheet(
    tiles: np.ndarray, cols: int, *, scale: int = 1, gap: int = 1, background: int = 255
) -> np.ndarray:
    """Tiles (N, h, w[, 3]) row-major, `cols` per row, each upscaled `scale`x (nearest
    neighbour), with `gap` px of `background` between them (none around the border)."""
    tiles = np.asarray(tiles)
    n, h, w = tiles.shape[:3]
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    ch, cw = h * scale, w * scale
    sheet = np.full(
        (rows * ch + (rows - 1) * gap, cols * cw + (cols - 1) * gap, *tiles.shape[3:]),
        background,
        dtype=np.uint8,
    )
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = r * (ch + gap), c * (cw + gap)
        sheet[y : y + ch, x : x + cw] = tile.repeat(scale, axis=0).repeat(scale, axis=1)
    return sheet


def view_scale(h: int, w: int, view_px: int) -> float:
    """Display px per image px so the longer side is about `view_px`: an integer factor for
    images up to `view_px`, else `view_px / side` (as the occlusion view)."""
    side = max(h, w, 1)
    return max(1, round(view_px / side)) if side <= view_px else view_px / side


def cell_edges(n: int, offset: float, step: float, k: float, limit: int) -> np.ndarray:
    """Pixel edges of n map cells starting at `offset` image px, `step` apart, at `k` px per
    image px: round((offset + e * step) * k) clamped to 0..limit, e = 0..n."""
    edges = _round_half_up((offset + np.arange(n + 1) * step) * k)
    return np.clip(edges, 0, limit).astype(np.int64)


def lut_index(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Colormap entry of each value on the scale vmin..vmax; -1 for NaN, 128 for an empty scale."""
    v = np.asarray(values, dtype=np.float64)
    span = vmax - vmin
    if not (span > 0 and math.isfinite(span)):
        idx = np.full(v.shape, 128.0)
    else:
        with np.errstate(invalid="ignore"):
            idx = np.clip(_round_half_up(255 * (v - vmin) / span), 0, 255)
    return np.where(np.isnan(v), -1, idx).astype(np.int64)


def occlusion_overlay(
    image: np.ndarray,
    scores: np.ndarray | None,
    *,
    patch: tuple[int, int],
    stride: tuple[int, int],
    lut: np.ndarray,
    vmin: float,
    vmax: float,
    opacity: float,
    view_px: int = 256,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """The occlusion view as RGB: `image` (H, W[, 3]) scaled to about `view_px` (nearest for an
    integer factor), and score cell (i, j) -- centred on the centre of the patch whose unclipped
    top-left is `origin + (i, j) * stride`, one stride square -- painted in `lut` colour at
    `opacity` (NaN cells left clear)."""
    from PIL import Image

    image = np.asarray(image, dtype=np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    h, w = image.shape[:2]
    k = view_scale(h, w, view_px)
    out_w, out_h = max(1, round(w * k)), max(1, round(h * k))
    if k == int(k):
        view = image.repeat(int(k), axis=0).repeat(int(k), axis=1)
    else:
        view = np.asarray(Image.fromarray(image).resize((out_w, out_h), Image.BICUBIC))
    if scores is None or np.size(scores) == 0 or opacity <= 0:
        return view.copy()
    ny, nx = np.shape(scores)
    (ph, pw), (sh, sw) = patch, stride
    if min(ph, pw, sh, sw) <= 0:
        return view.copy()
    ey = cell_edges(ny, origin[0] + (ph - sh) / 2, sh, k, out_h)
    ex = cell_edges(nx, origin[1] + (pw - sw) / 2, sw, k, out_w)
    idx = lut_index(scores, vmin, vmax)
    rows = np.repeat(np.arange(ny), np.diff(ey))
    cols = np.repeat(np.arange(nx), np.diff(ex))
    cell_idx = idx[np.ix_(rows, cols)]
    colour = np.asarray(lut, dtype=np.float64)[np.maximum(cell_idx, 0)]
    alpha = min(1.0, max(0.0, float(opacity)))
    region = view[ey[0] : ey[-1], ex[0] : ex[-1]].astype(np.float64)
    blended = _round_half_up(region * (1 - alpha) + colour * alpha)
    region = np.where((cell_idx >= 0)[..., None], blended, region)
    out = view.copy()
    out[ey[0] : ey[-1], ex[0] : ex[-1]] = region.astype(np.uint8)
    return out


def hex_rgb(color: str) -> tuple[int, int, int]:
    """A "#rrggbb" (or "#rgb") colour as an (r, g, b) tuple."""
    c = color.strip().lstrip("#")
    if len(c) == 3:
        c = "".join(ch * 2 for ch in c)
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def scatter_image(
    xy: np.ndarray,
    labels: np.ndarray,
    colors: list[str],
    *,
    size: int = 480,
    point_px: int | None = None,
    hidden=(),
    selected: int = -1,
    margin: int = 8,
    unknown_color: str = "#8c8c8c",
) -> np.ndarray:
    """Points in [-1, 1]^2 (y up) as discs of their class colour on a white `size` square;
    labels in `hidden` left out; point `selected` (when >= 0) drawn last with a dark ring."""
    from PIL import Image, ImageDraw

    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels).reshape(-1)
    n = len(xy)
    if point_px is None:
        point_px = 6 if n <= 2000 else 4 if n <= 20000 else 3 if n <= 200000 else 2
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    span = max(1, size - 1 - 2 * margin)
    px = margin + (xy[:, 0] + 1) / 2 * span
    py = margin + (1 - xy[:, 1]) / 2 * span
    rgb = [hex_rgb(c) for c in colors]
    hidden = set(hidden)
    r = point_px / 2
    for i in range(n):
        lab = int(labels[i]) if i < len(labels) else -1
        if lab in hidden:
            continue
        fill = rgb[lab] if 0 <= lab < len(rgb) else hex_rgb(unknown_color)
        draw.ellipse((px[i] - r, py[i] - r, px[i] + r, py[i] + r), fill=fill)
    if 0 <= selected < n:
        ring = r + 3
        box = (px[selected] - ring, py[selected] - ring, px[selected] + ring, py[selected] + ring)
        draw.ellipse(box, outline=(34, 34, 34), width=2)
    return np.asarray(img)
