"""Arrays to images: normalisation, colormaps, tile atlases and PNG bytes. No torch here."""

from __future__ import annotations

import contextlib
import io
import math
import os
import pathlib
import secrets

import numpy as np

# the views as images are drawing.py's; export.py and the tests read these names here
from .drawing import hex_rgb, occlusion_overlay, scatter_image, tile_scale, tile_sheet  # noqa: F401

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


def save_png(image: np.ndarray, path: str | os.PathLike) -> pathlib.Path:
    """Write a uint8 (H, W) or (H, W, 3) array to `path` as a PNG file; the path written.

    What every widget's `save_png` calls. `~` is expanded. A name not ending in ".png" is
    refused (the bytes are PNG whatever the name says); so is a folder that does not exist.
    The file appears whole or not at all: the image is encoded first, written to a
    temporary file beside it and renamed over `path` (an existing file there is replaced).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    target = pathlib.Path(path).expanduser()
    if target.suffix.lower() != ".png":
        fix = pathlib.Path(path).with_name(target.stem + ".png")
        raise ValueError(
            f"save_png writes PNG files; {str(path)!r} "
            + (f"ends in {target.suffix!r}" if target.suffix else "has no suffix")
            + f". Give a name ending in .png, e.g. {str(fix)!r} (to get another format, open "
            "the PNG with PIL and save it again: Image.open(png).convert('RGB').save(...))"
        )
    if target.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; give a file name ending in .png")
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Cannot save {str(path)!r}: the folder {str(folder)!r} does not exist; create it "
            f"first (os.makedirs({str(folder)!r}, exist_ok=True)) or save elsewhere"
        )
    data = png_bytes(image)
    temporary = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
    # O_EXCL: a new file of our own; mode 0o666 less the umask, as open() would make it
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return target


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


#: how feature maps map to [0, 0.5, 1]: min..max; 0..max (zero is black: post-activation
#: maps); -m..0..m with m the largest magnitude (zero in the middle: signed, linear maps)
SCALES = ("minmax", "zero", "signed")


def feature_tiles(
    maps: np.ndarray, *, normalize: str = "layer", colormap: str = "gray", scale: str = "minmax"
) -> np.ndarray:
    """Feature maps (C, H, W) as uint8 tiles, scaled (`SCALES`) per layer or per channel."""
    if maps.ndim != 3:
        raise ValueError(f"Expected feature maps of shape (C, H, W); got {maps.shape}")
    if normalize not in ("layer", "channel"):
        raise ValueError(f"Unknown normalize {normalize!r}; choose 'layer' or 'channel'")
    if scale not in SCALES:
        raise ValueError(f"Unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    axes = (1, 2) if normalize == "channel" else None
    if scale == "minmax":
        return apply_colormap(unit_range(maps, axes), colormap)
    a = np.asarray(maps, dtype=np.float64)
    if scale == "zero":
        top = np.clip(a, 0, None).max(axis=axes, keepdims=True)
        return apply_colormap(np.clip(a, 0, None) / np.where(top > 0, top, 1.0), colormap)
    top = np.abs(a).max(axis=axes, keepdims=True)
    return apply_colormap(0.5 + a / (2 * np.where(top > 0, top, 1.0)), colormap)


def kernel_sheet(
    weight: np.ndarray, *, max_channels: int = 64, px: int = 12, cols: int = 8
) -> tuple[np.ndarray, tuple[int, int], int]:
    """One filter's kernels (1, I, kh, kw) as a uint8 sheet: each tile (`kernel_tiles`) drawn
    about `px` pixels wide (nearest), 1 white pixel apart, `cols` per row. Returns (sheet,
    (rows, cols), number of tiles)."""
    tiles = kernel_tiles(weight, max_channels=max_channels)
    scale = max(1, px // max(tiles.shape[1:3]))
    extra = [1] * (tiles.ndim - 3)  # the colour axis of RGB tiles
    big = np.kron(tiles, np.ones((1, scale, scale, *extra), tiles.dtype))
    pad = [(0, 0), (0, 1), (0, 1)] + [(0, 0)] * len(extra)
    sheet, grid = pack_tiles(np.pad(big, pad, constant_values=255), min(len(tiles), cols))
    return sheet, grid, len(tiles)


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


#: the colour of a box drawn over a tile (TopPatches' effective field on its geometric crop)
FRAME_COLOR = (255, 0, 255)


def fit_shape(h: int, w: int, max_px: int) -> tuple[int, int]:
    """The (h, w) `fit_tiles` gives an h x w tile: shrunk so the longer side is <= max_px."""
    scale = min(1.0, max_px / max(h, w))
    return (h, w) if scale == 1.0 else (max(1, round(h * scale)), max(1, round(w * scale)))


def fit_into(images: list[np.ndarray], shape: tuple[int, int], fill: int = 128) -> np.ndarray:
    """Each uint8 image (h, w[, 3]) resized to fit `shape` with its aspect kept (area filter
    when shrinking, nearest when growing), centred on `fill`; stacked (N, *shape[, 3])."""
    from PIL import Image

    th, tw = shape
    out = np.full((len(images), th, tw, *images[0].shape[2:]), fill, dtype=np.uint8)
    for tile, image in zip(out, images, strict=True):
        h, w = image.shape[:2]
        scale = min(th / h, tw / w)
        nh, nw = min(th, max(1, round(h * scale))), min(tw, max(1, round(w * scale)))
        kind = Image.BOX if scale < 1 else Image.NEAREST
        resized = np.asarray(Image.fromarray(image).resize((nw, nh), kind))
        y, x = (th - nh) // 2, (tw - nw) // 2
        tile[y : y + nh, x : x + nw] = resized
    return out


def frame_tiles(
    tiles: np.ndarray, boxes: list[tuple[int, int, int, int]], color=FRAME_COLOR
) -> np.ndarray:
    """RGB copies of uint8 `tiles` (N, h, w[, 3]), each with a 1-px `color` rectangle on the
    border of its box (y0, y1, x0, x1) in tile pixels, half-open, clipped to the tile."""
    tiles = np.asarray(tiles)
    rgb = np.repeat(tiles[..., None], 3, axis=-1) if tiles.ndim == 3 else tiles.copy()
    h, w = rgb.shape[1:3]
    for tile, (y0, y1, x0, x1) in zip(rgb, boxes, strict=True):
        y0, x0 = min(max(y0, 0), h - 1), min(max(x0, 0), w - 1)
        y1, x1 = max(min(y1, h), y0 + 1), max(min(x1, w), x0 + 1)
        tile[[y0, y1 - 1], x0:x1] = color
        tile[y0:y1, [x0, x1 - 1]] = color
    return rgb


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
    return sprite_sheets(fit_tiles(images, thumb_px), max_side)


def sprite_sheets(
    tiles: np.ndarray, max_side: int = 2048
) -> tuple[list[bytes], tuple[int, int], int, int]:
    """`sprite_pages` of thumbnails already made (N, h, w[, 3]) uint8."""
    h, w = tiles.shape[1:3]
    cols = max(1, min(len(tiles), max_side // w))
    per_page = cols * max(1, max_side // h)
    pages = [
        png_bytes(pack_tiles(tiles[i : i + per_page], cols)[0])
        for i in range(0, len(tiles), per_page)
    ]
    return pages, (h, w), cols, per_page
