"""Arrays to images: normalisation, colormaps, tile atlases and PNG bytes. No torch here."""

from __future__ import annotations

import io
import math

import numpy as np

# Anchor colours (evenly spaced) of matplotlib's perceptual maps, interpolated to 256 entries.
_ANCHORS = {
    "viridis": [
        (68, 1, 84),
        (72, 40, 120),
        (62, 73, 137),
        (49, 104, 142),
        (38, 130, 142),
        (31, 158, 137),
        (53, 183, 121),
        (110, 206, 88),
        (181, 222, 43),
        (253, 231, 37),
    ],
    "magma": [
        (0, 0, 4),
        (28, 16, 68),
        (79, 18, 123),
        (129, 37, 129),
        (181, 54, 122),
        (229, 80, 100),
        (251, 135, 97),
        (254, 194, 135),
        (252, 253, 191),
    ],
    "coolwarm": [
        (59, 76, 192),
        (98, 130, 234),
        (141, 176, 254),
        (184, 208, 249),
        (221, 221, 221),
        (245, 196, 173),
        (244, 154, 123),
        (222, 96, 77),
        (180, 4, 38),
    ],
}
COLORMAPS = ("gray", *_ANCHORS)


def colormap_lut(name: str) -> np.ndarray:
    """A (256, 3) uint8 lookup table for a colormap name in COLORMAPS."""
    if name == "gray":
        ramp = np.arange(256, dtype=np.uint8)
        return np.stack([ramp] * 3, axis=1)
    if name not in _ANCHORS:
        raise ValueError(f"Unknown colormap {name!r}; choose one of: {', '.join(COLORMAPS)}")
    anchors = np.asarray(_ANCHORS[name], dtype=np.float64)
    where = np.linspace(0, 1, len(anchors))
    x = np.linspace(0, 1, 256)
    lut = np.stack([np.interp(x, where, anchors[:, c]) for c in range(3)], axis=1)
    return np.round(lut).astype(np.uint8)


def unit_range(a: np.ndarray, axes: tuple[int, ...] | None = None) -> np.ndarray:
    """Min-max scale to [0, 1] over `axes` (all when None); a constant block maps to 0.5."""
    a = np.asarray(a, dtype=np.float64)
    lo = a.min(axis=axes, keepdims=True)
    hi = a.max(axis=axes, keepdims=True)
    span = hi - lo
    flat = span <= 0
    return np.where(flat, 0.5, (a - lo) / np.where(flat, 1.0, span))


def to_uint8(u: np.ndarray) -> np.ndarray:
    """Values in [0, 1] to uint8 0..255, rounded."""
    return np.round(np.clip(u, 0.0, 1.0) * 255.0).astype(np.uint8)


def apply_colormap(u: np.ndarray, name: str = "gray") -> np.ndarray:
    """Values in [0, 1] to uint8: grayscale (...) for "gray", RGB (..., 3) otherwise."""
    idx = to_uint8(u)
    return idx if name == "gray" else colormap_lut(name)[idx]


def grid_columns(n: int, aspect: float = 1.0) -> int:
    """Columns for a near-square grid of n tiles of aspect height/width."""
    return max(1, math.ceil(math.sqrt(n * aspect)))


def pack_tiles(tiles: np.ndarray, cols: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Pack (N, h, w[, 3]) tiles row-major, no gaps, in one atlas; returns (atlas, (rows, cols))."""
    tiles = np.asarray(tiles)
    n, h, w = tiles.shape[:3]
    cols = cols or grid_columns(n, h / w)
    rows = math.ceil(n / cols)
    atlas = np.zeros((rows * h, cols * w, *tiles.shape[3:]), dtype=tiles.dtype)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        atlas[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return atlas, (rows, cols)


def unpack_tile(
    atlas: np.ndarray, index: int, tile_shape: tuple[int, int], cols: int
) -> np.ndarray:
    """Tile `index` cut back out of an atlas made by `pack_tiles`."""
    h, w = tile_shape
    r, c = divmod(index, cols)
    return atlas[r * h : (r + 1) * h, c * w : (c + 1) * w]


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 (H, W) or (H, W, 3) array as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes back to a uint8 array."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def kernel_tiles(
    weight: np.ndarray,
    *,
    normalize: str = "filter",
    rgb: bool | None = None,
    max_filters: int | None = None,
    max_channels: int | None = None,
) -> np.ndarray:
    """Conv kernels (O, I, kh, kw) as uint8 tiles.

    RGB (O, kh, kw, 3) when I == 3 (or rgb=True), else grayscale (O*I', kh, kw) ordered filter-major
    over the first I' = min(I, max_channels) input channels. Values are min-max scaled to 0..255
    per filter (over all of that filter's input channels) with normalize="filter", or over the
    whole layer with normalize="global", before the filters/channels are cut to the caps.
    """
    if weight.ndim != 4:
        raise ValueError(f"Expected conv weights of shape (O, I, kh, kw); got {weight.shape}")
    if normalize not in ("filter", "global"):
        raise ValueError(f"Unknown normalize {normalize!r}; choose 'filter' or 'global'")
    axes = (1, 2, 3) if normalize == "filter" else None
    u = unit_range(weight, axes)[:max_filters]
    rgb = weight.shape[1] == 3 if rgb is None else rgb
    if rgb:
        if weight.shape[1] != 3:
            raise ValueError(f"rgb=True needs 3 input channels; the weights have {weight.shape[1]}")
        return to_uint8(u.transpose(0, 2, 3, 1))
    u = u[:, :max_channels]
    return to_uint8(u.reshape(-1, *u.shape[2:]))


def feature_tiles(
    maps: np.ndarray, *, normalize: str = "layer", colormap: str = "gray"
) -> np.ndarray:
    """Feature maps (C, H, W) as uint8 tiles, min-max scaled per layer or per channel."""
    if maps.ndim != 3:
        raise ValueError(f"Expected feature maps of shape (C, H, W); got {maps.shape}")
    if normalize not in ("layer", "channel"):
        raise ValueError(f"Unknown normalize {normalize!r}; choose 'layer' or 'channel'")
    axes = (1, 2) if normalize == "channel" else None
    return apply_colormap(unit_range(maps, axes), colormap)


def display_image(chw: np.ndarray) -> np.ndarray:
    """A model input (C, H, W) as a viewable uint8 image, min-max scaled per channel."""
    u = unit_range(chw, (1, 2))
    return to_uint8(u[0] if u.shape[0] == 1 else u[:3].transpose(1, 2, 0))


def fit_tiles(tiles: list[np.ndarray], max_px: int) -> np.ndarray:
    """Stack equal-size uint8 tiles, shrunk (area filter) so the longer side is <= max_px."""
    from PIL import Image

    h, w = tiles[0].shape[:2]
    scale = min(1.0, max_px / max(h, w))
    if scale == 1.0:
        return np.stack(tiles)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([np.asarray(Image.fromarray(t).resize(size, Image.BOX)) for t in tiles])


# Tableau's 10 categorical colours; more classes get evenly spaced hues.
_TAB10 = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip


def class_colors(n: int) -> list[str]:
    """n distinguishable "#rrggbb" colours, one per class."""
    if n <= len(_TAB10):
        return _TAB10[:n]
    import colorsys

    rgb = [colorsys.hsv_to_rgb(i / n, 0.65, 0.85) for i in range(n)]
    return ["#{:02x}{:02x}{:02x}".format(*(round(c * 255) for c in col)) for col in rgb]


def unit_square(xy: np.ndarray) -> np.ndarray:
    """2-D points scaled uniformly (aspect kept) and centred into [-1, 1], as float32."""
    xy = np.asarray(xy, dtype=np.float64)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = float((hi - lo).max()) or 1.0
    return ((xy - (lo + hi) / 2) * (2 / span)).astype(np.float32)


def sprite_pages(
    images: list[np.ndarray], thumb_px: int = 32, max_side: int = 2048
) -> tuple[list[bytes], tuple[int, int], int, int]:
    """Thumbnails packed into PNG sprite pages; returns (pages, thumb shape, columns, per page).

    Every thumbnail is shrunk to fit `thumb_px` (same size for all); a page is at most
    `max_side` pixels on a side, which keeps each message well under 5 MB.
    """
    tiles = fit_tiles(images, thumb_px)
    h, w = tiles.shape[1:3]
    cols = max(1, min(len(tiles), max_side // w))
    per_page = cols * max(1, max_side // h)
    pages = [
        png_bytes(pack_tiles(tiles[i : i + per_page], cols)[0])
        for i in range(0, len(tiles), per_page)
    ]
    return pages, (h, w), cols, per_page
