"""to_html pages (state, bundle, buffers, escaping) and save_png images, without a browser."""

from __future__ import annotations

import base64
import hashlib
import html
import html.parser
import json
import math
import re

import anywidget
import ipywidgets
import nbformat
import numpy as np
import pytest
import traitlets
from ipywidgets import embed

from cnnviz_widgets import (
    CNNExplorer,
    EmbeddingExplorer,
    FeatureMaps,
    FilterGrid,
    OcclusionMap,
    TopPatches,
    export,
    render,
)
from cnnviz_widgets.widgets._codec import array_from_json

HOSTILE = "</script><img src=x onerror=alert(1)>"


class _Scripts(html.parser.HTMLParser):
    """The <script> elements and the <title> of a page, as a browser's parser splits them."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict, str]] = []
        self.tags: list[str] = []
        self.title = ""
        self._in: tuple | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in ("script", "title"):
            self._in = (tag, dict(attrs), [])

    def handle_data(self, data):
        if self._in:
            self._in[2].append(data)

    def handle_endtag(self, tag):
        if self._in and tag == self._in[0]:
            text = "".join(self._in[2])
            if tag == "script":
                self.scripts.append((self._in[1], text))
            else:
                self.title = text
            self._in = None


def page_parts(page: str) -> tuple[dict, _Scripts]:
    """The embedded data of a one-widget page (parsed; its module and style sheet put in as
    "esm" and "css") and the parsed page."""
    parsed = _Scripts(page)
    data = [text for attrs, text in parsed.scripts if attrs.get("class") == "cnnviz-data"]
    assert len(data) == 1
    data = json.loads(data[0])
    shared = [text for attrs, text in parsed.scripts if attrs.get("id") == "cnnviz-modules"]
    assert len(shared) == 1
    shared = json.loads(shared[0])
    data["esm"] = shared["modules"][data["module"]]
    data["css"] = shared["styles"][data["style"]] if data["style"] else ""
    return data, parsed


def with_buffers(data: dict) -> dict:
    """The state with the base64 buffers put back at their paths (what the page's loader does)."""
    state = json.loads(json.dumps(data["state"]))
    for buf in data["buffers"]:
        assert buf["encoding"] == "base64"
        obj = state
        for key in buf["path"][:-1]:
            obj = obj[key]
        obj[buf["path"][-1]] = base64.b64decode(buf["data"])
    return state


def same(saved, value) -> bool:
    """A value of a page's state is the trait's value: an array as the codec carries it
    (`{dtype, shape, buffer}`, the bytes put back), anything else as it is."""
    if isinstance(value, np.ndarray):
        got = array_from_json(saved)
        return got.dtype == value.dtype and np.array_equal(got, value)
    return saved == value


@pytest.fixture(scope="module")
def feature_maps(demo):
    model, dataset, _ = demo
    return FeatureMaps(model, dataset[0][0], "conv2")


@pytest.fixture(scope="module")
def explorer(demo):
    model, dataset, classes = demo
    return EmbeddingExplorer(model, dataset, classes, method="pca", progress=False).wait()


# --- to_html ---------------------------------------------------------------------------------


def test_page_holds_the_bundle_and_the_state(feature_maps, tmp_path):
    path = tmp_path / "fm.html"
    page = feature_maps.to_html(path, title="conv2 maps")
    assert path.read_text(encoding="utf-8") == page
    data, parsed = page_parts(page)
    assert parsed.title == "conv2 maps"
    assert data["name"] == "FeatureMaps"
    assert data["esm"] == feature_maps._esm and "render" in data["esm"]
    state = with_buffers(data)
    for name in ("caption", "layer", "tile_shape", "grid_shape", "n_tiles", "sort_by"):
        assert state[name] == getattr(feature_maps, name)
    for name in ("atlas_png", "input_png", "channel_max", "channel_mean"):
        assert same(state[name], getattr(feature_maps, name))  # the bytes survive base64
    # ipywidgets' and anywidget's own traits stay out of the page
    for name in ("layout", "_esm", "_model_name", "_view_module", "_dom_classes", "tooltip"):
        assert name not in state


def test_a_page_holds_each_child_widget_s_state(demo):
    """CNNExplorer's views are child widgets: the page holds each child's state, by the model
    id the explorer's state references (its in-page `widget_manager.get_model` reads them)."""
    model, dataset, classes = demo
    x = CNNExplorer(model, dataset, classes, method="pca", progress=False, selected_index=3)
    x.wait()
    data, _ = page_parts(x.to_html())
    state = with_buffers(data)
    kids = {n: getattr(x, n) for n in ("embedding", "feature_maps", "occlusion", "top_patches")}
    for name, kid in kids.items():
        ref = state[name]
        assert ref == f"IPY_MODEL_{kid.model_id}"
        child = with_buffers(data["models"][kid.model_id])
        assert "_esm" not in child and "layout" not in child
        for trait in kid.keys:
            if trait in child:
                assert same(child[trait], getattr(kid, trait)), (name, trait)
    assert with_buffers(data["models"][x.embedding.model_id])["selected_index"] == 3
    x.close()


def test_nested_bytes_round_trip(explorer):
    """A List(Bytes) trait: each page of thumbnails gets its own path."""
    explorer.selected_index = 5
    data, _ = page_parts(export.to_html(explorer))
    paths = [b["path"] for b in data["buffers"]]
    assert ["thumb_pages", 0] in paths
    state = with_buffers(data)
    assert state["thumb_pages"] == list(explorer.thumb_pages)
    assert same(state["points"], explorer.points) and explorer.points.shape[1] == 2
    assert same(state["neighbours"], explorer.neighbours) and len(explorer.neighbours) > 0
    assert state["selected_index"] == 5
    assert state["class_names"] == explorer.class_names


def test_split_buffers_nested_and_non_finite():
    buffers: list[dict] = []
    value = {"a": b"\x00\xff", "b": [1, (b"xy", {"c": bytearray(b"z")})], "n": math.nan}
    out = export._split_buffers(value, [], buffers)
    assert out == {"a": None, "b": [1, [None, {"c": None}]], "n": None}
    got = {tuple(b["path"]): base64.b64decode(b["data"]) for b in buffers}
    assert got == {("a",): b"\x00\xff", ("b", 1, 0): b"xy", ("b", 1, 1, "c"): b"z"}


class _Hostile(anywidget.AnyWidget):
    _esm = "export default { render({ el }) { el.textContent = '</script><!-- x'; } };"
    _css = ".x::after { content: '</style>'; }"
    name = traitlets.Unicode(HOSTILE).tag(sync=True)
    names = traitlets.List(traitlets.Unicode(), [HOSTILE, "a & b <!-- c"]).tag(sync=True)


def test_everything_embedded_is_escaped():
    widget = _Hostile()
    page = export.to_html(widget, title=HOSTILE)
    # nothing embedded can open or close an element: the only tags are the page's own
    assert "<img" not in page.lower()
    assert page.lower().count("</script") == 3  # the data, module and loader blocks' own
    assert "<!--" not in page
    data, parsed = page_parts(page)
    assert parsed.title == HOSTILE  # escaped in the markup, the same text once parsed
    assert "img" not in parsed.tags
    types = [attrs.get("type") for attrs, _ in parsed.scripts]
    assert types == ["application/json", "application/json", "module"]
    assert data["esm"] == widget._esm
    assert data["css"] == widget._css
    assert data["state"]["name"] == HOSTILE
    assert data["state"]["names"] == [HOSTILE, "a & b <!-- c"]


def test_csp_allows_only_the_loader():
    page = export.to_html(_Hostile())
    _, parsed = page_parts(page)
    loader = next(text for attrs, text in parsed.scripts if attrs.get("type") == "module")
    digest = base64.b64encode(hashlib.sha256(loader.encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    assert f"'sha256-{digest}'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "default-src 'none'" in csp and "connect-src blob: data:" in csp


def test_url_bundles_are_refused():
    class Remote(anywidget.AnyWidget):
        _esm = "https://example.com/widget.js"

    with pytest.raises(ValueError, match="not offline"):
        export.to_html(Remote())


# --- notebooks (nbconvert) ------------------------------------------------------------------


def saved_state(*widgets) -> dict:
    """The notebook metadata's widget state for `widgets` (the layout nbclient and JupyterLab
    save: {model_name, model_module, state, buffers: [{path, encoding, data}]})."""
    state = embed.dependency_state(list(widgets), drop_defaults=False)
    return {"version_major": 2, "version_minor": 0, "state": state}


def view_output(model_id: str) -> dict:
    return nbformat.v4.new_output(
        "display_data",
        data={
            export.WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": model_id},
            "text/plain": f"<widget {model_id}>",
        },
    )


def notebook_with(views: list[str], state: dict, more_outputs=()) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("widgets")
    cell.outputs = [view_output(m) for m in views] + list(more_outputs)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title"), cell])
    nb.metadata.widgets = {export.WIDGET_STATE: state}
    return nb


def fragments(page: str) -> tuple[list[dict], _Scripts]:
    """Each widget's data on a page, with its module and style sheet put in ("esm", "css")."""
    parsed = _Scripts(page)
    shared = [json.loads(t) for a, t in parsed.scripts if a.get("id") == "cnnviz-modules"]
    assert len(shared) == 1
    out = []
    for attrs, text in parsed.scripts:
        if attrs.get("class") == "cnnviz-data":
            data = json.loads(text)
            data["esm"] = shared[0]["modules"][data["module"]]
            data["css"] = shared[0]["styles"][data["style"]] if data["style"] else ""
            out.append(data)
    return out, parsed


def test_saved_state_gives_what_page_data_gives(feature_maps):
    entry = saved_state(feature_maps)["state"][feature_maps.model_id]
    assert entry["buffers"]  # the PNGs and the statistics travel as base64 buffers
    data = export.saved_widget_data(entry)
    want = export.page_data(feature_maps)
    assert data["name"] == want["name"] == "FeatureMaps"
    assert (data["esm"], data["css"]) == (want["esm"], want["css"])
    assert with_buffers(data) == with_buffers(want)
    assert with_buffers(data)["atlas_png"] == feature_maps.atlas_png


def test_saved_state_hex_buffers_base_traits_and_plain_widgets():
    entry = {
        "model_name": "AnyModel",
        "state": {
            "_esm": "export default {}",
            "_anywidget_id": "pkg.mod.Thing",
            "layout": "IPY_MODEL_x",
            "items": [None, 3],
        },
        "buffers": [
            {"path": ["blob"], "encoding": "hex", "data": "00ff10"},
            {"path": ["items", 0], "encoding": "base64", "data": "eHk="},
            {"path": ["_css"], "encoding": "base64", "data": "eA=="},  # a base trait's: dropped
        ],
    }
    data = export.saved_widget_data(entry)
    assert data["name"] == "Thing"
    assert data["state"] == {"items": [None, 3]}  # ipywidgets' own traits stay out
    assert with_buffers(data) == {"items": [b"xy", 3], "blob": b"\x00\xff\x10"}
    slider = saved_state(ipywidgets.IntSlider(4))["state"]
    assert all(export.saved_widget_data(e) is None for e in slider.values())
    remote = {"state": {"_esm": "https://example.com/w.js"}}
    with pytest.raises(ValueError, match="not offline"):
        export.saved_widget_data(remote)


def test_notebook_page(feature_maps, demo, tmp_path):
    hostile = _Hostile()
    slider = ipywidgets.IntSlider(7)
    other = FeatureMaps(demo[0], demo[1][1][0], "conv1")
    box = ipywidgets.HBox([other, ipywidgets.Dropdown(options=["a", "b"])])
    state = saved_state(feature_maps, hostile, slider, box)
    views = [feature_maps.model_id, hostile.model_id, slider.model_id, box.model_id, "gone"]
    views.insert(1, feature_maps.model_id)  # the same widget shown twice
    script = nbformat.v4.new_output(
        "display_data", data={"application/javascript": "window.ranJs = 1", "text/plain": "js"}
    )
    nb = notebook_with(views, state, [script])
    before = json.dumps(nb, sort_keys=True)
    page = export.notebook_to_html(nb, tmp_path / "nb.html")
    assert json.dumps(nb, sort_keys=True) == before  # the notebook is left as it was
    assert (tmp_path / "nb.html").read_text(encoding="utf-8") == page

    shown, parsed = fragments(page)
    assert [d["name"] for d in shown] == ["FeatureMaps", "FeatureMaps", "_Hostile", "FeatureMaps"]
    for data in shown[:2]:
        assert with_buffers(data) == with_buffers(export.page_data(feature_maps))
    assert with_buffers(shown[3])["atlas_png"] == other.atlas_png  # inside the HBox
    assert shown[2]["state"]["names"] == [HOSTILE, "a & b <!-- c"]
    # each distinct bundle and style sheet once
    assert page.count(export.json_for_script(feature_maps._esm)[1:-1]) == 1
    assert len({d["module"] for d in shown}) == 2
    # nothing runs but the loader: no CDN script, no JavaScript output, no injected element
    types = [a.get("type") for a, _ in parsed.scripts]
    assert types.count("module") == 1
    assert set(types) == {"application/json", "module", export.WIDGET_STATE}
    assert not [a for a, _ in parsed.scripts if "src" in a]
    assert "ranJs" not in page and "require" not in page.split("<body", 1)[0]
    assert "img" not in parsed.tags
    assert "<img" not in page.lower()
    loader = next(text for attrs, text in parsed.scripts if attrs.get("type") == "module")
    assert loader == export._LOADER
    metas = re.findall(r"<meta [^>]*Content-Security-Policy[^>]*>", page)
    assert len(metas) == 1  # to_html's policy: only the loader runs, nothing leaves the page
    csp = html.unescape(re.search(r'content="([^"]*)"', metas[0]).group(1))
    assert csp == export._csp(export._LOADER)
    # the saved state is not repeated: one empty entry per view, for nbconvert's filter
    stub = json.loads(next(t for a, t in parsed.scripts if a.get("type") == export.WIDGET_STATE))
    assert all(v == {} for v in stub["state"].values())
    placeholders = re.findall(r'class="cnnviz-export-placeholder[^"]*">([^<]*)<', page)
    assert len(placeholders) == 4, placeholders
    for word in ("IntSlider", "Dropdown", "not saved", "JavaScript"):
        assert any(word in p for p in placeholders), word


def test_exporter_is_registered_for_nbconvert():
    from nbconvert.exporters import get_exporter

    exporter = get_exporter("cnnviz-html")
    assert exporter is export.OfflineHTMLExporter, "run `pip install -e .` to register it"
    assert issubclass(exporter, __import__("nbconvert").HTMLExporter)


# --- save_png --------------------------------------------------------------------------------


def upscaled(tile: np.ndarray, s: int) -> np.ndarray:
    return np.kron(tile, np.ones((s, s) + (1,) * (tile.ndim - 2), tile.dtype))


def check_sheet(sheet: np.ndarray, tiles: list[np.ndarray], cols: int, s: int) -> None:
    """Tile i at row i // cols, column i % cols, `s` times larger, 1-px gaps of the gap colour."""
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / cols)
    cols = min(cols, len(tiles))
    assert sheet.shape[:2] == (rows * h * s + rows - 1, cols * w * s + cols - 1)
    for i, tile in enumerate(tiles):
        y, x = (i // cols) * (h * s + 1), (i % cols) * (w * s + 1)
        np.testing.assert_array_equal(sheet[y : y + h * s, x : x + w * s], upscaled(tile, s))
    if rows > 1:
        assert (sheet[h * s] == export.TILE_GAP_COLOR).all()  # the first gap row
    assert (sheet[:, w * s] == export.TILE_GAP_COLOR).all()


def test_filter_grid_png(demo, tmp_path):
    fg = FilterGrid(demo[0], tile_px=30)
    fg.save_png(tmp_path / "f.png")
    sheet = render.decode_png((tmp_path / "f.png").read_bytes())
    kernels = render.kernel_tiles(fg.weight)  # (16, 3, 3): grayscale, one per filter
    assert fg.tile_shape == [3, 3] and fg.grid_shape == [4, 4]
    check_sheet(sheet, list(kernels), cols=4, s=10)


def test_feature_maps_png_follows_sort_order(feature_maps, tmp_path):
    feature_maps.sort_by = "mean"
    try:
        feature_maps.save_png(tmp_path / "m.png")
    finally:
        feature_maps.sort_by = "index"
    sheet = render.decode_png((tmp_path / "m.png").read_bytes())
    maps = feature_maps.activations
    order = sorted(range(len(maps)), key=lambda c: (-float(maps[c].mean()), c))
    assert feature_maps.kind == "linear"  # conv2: drawn signed, in coolwarm
    tiles = render.feature_tiles(maps, scale="signed", colormap="coolwarm")
    h, w = tiles.shape[1:3]
    s = render.tile_scale(feature_maps.tile_px, h, w)
    assert s == 4  # 16x16 maps at tile_px 64
    check_sheet(sheet, [tiles[c] for c in order], feature_maps.grid_shape[1], s)


def test_top_patches_png(demo, tmp_path):
    model, dataset, _ = demo
    tp = TopPatches(model, dataset, "conv2", k=3, channels_per_page=4, progress=False).wait()
    tp.page = 1
    tp.save_png(tmp_path / "p.png")
    sheet = render.decode_png((tmp_path / "p.png").read_bytes())
    patches = [tp.top.patch(int(c), r) for c in tp.channels for r in range(3)]
    tiles = render.fit_tiles(patches, tp.max_patch_px)
    s = render.tile_scale(tp.tile_px, *tiles.shape[1:3])
    check_sheet(sheet, list(tiles), cols=3, s=s)


def test_occlusion_png_is_the_overlay(demo, tmp_path):
    model, dataset, classes = demo
    om = OcclusionMap(model, dataset[7][0], classes=classes, opacity=0.5)
    om.wait()
    om.save_png(tmp_path / "o.png")
    out = render.decode_png((tmp_path / "o.png").read_bytes())
    image = render.display_image(dataset[7][0].numpy())  # 32x32 grayscale
    k = om.view_px // 32
    assert out.shape == (32 * k, 32 * k, 3)
    res = om.result
    lut = render.colormap_lut(om.colormap)
    (ph, pw), (sh, sw) = res.patch_size, res.stride
    span = om.vmax - om.vmin
    for i, j in [(0, 0), (3, 5), (res.scores.shape[0] - 1, res.scores.shape[1] - 1)]:
        # the centre of cell (i, j): the centre of the patch centred on (i * sh, j * sw)
        oy, ox = om.map_origin
        cy, cx = max(0.0, oy + i * sh + ph / 2), max(0.0, ox + j * sw + pw / 2)
        y, x = int(cy * k), int(cx * k)
        colour = lut[math.floor(255 * (res.scores[i, j] - om.vmin) / span + 0.5)]
        pixel = float(image[int(cy), int(cx)])
        want = np.floor(pixel * 0.5 + colour * 0.5 + 0.5)
        np.testing.assert_array_equal(out[y, x], want)
    om.opacity = 0.0
    om.save_png(tmp_path / "o0.png")
    plain = render.decode_png((tmp_path / "o0.png").read_bytes())
    np.testing.assert_array_equal(plain[..., 0], upscaled(image, k))


def test_overlay_nan_cells_stay_clear():
    image = np.full((4, 4), 100, np.uint8)
    scores = np.array([[0.0, np.nan], [1.0, 0.5]])
    lut = render.colormap_lut("gray")
    out = render.occlusion_overlay(
        image, scores, patch=(2, 2), stride=(2, 2), lut=lut, vmin=0, vmax=1, opacity=1.0, view_px=4
    )
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[0, 3].tolist() == [100, 100, 100]  # NaN: the image
    assert out[3, 0].tolist() == [255, 255, 255]
    assert out[3, 3].tolist() == [128, 128, 128]


def test_embedding_png_colours_points_by_class(explorer, tmp_path):
    explorer.selected_index = -1
    explorer.view_px = 300
    xy, labels = explorer.points, explorer.labels
    span = 300 - 1 - 16
    px = np.round(np.c_[8 + (xy[:, 0] + 1) / 2 * span, 8 + (1 - xy[:, 1]) / 2 * span])
    # a point with no other point within 8 px: its centre shows its class colour
    dist = np.linalg.norm(px[:, None] - px[None], axis=-1) + np.eye(len(px)) * 1e9
    lonely = int(np.argmax(dist.min(axis=1)))
    assert dist[lonely].min() > 8
    x, y = px[lonely].astype(int)
    colour = render.hex_rgb(explorer.class_colors[labels[lonely]])
    explorer.save_png(tmp_path / "e.png")
    out = render.decode_png((tmp_path / "e.png").read_bytes())
    assert out.shape == (300, 300, 3)
    assert tuple(out[y, x]) == colour
    assert (out == 255).all(axis=-1).mean() > 0.5  # mostly white background
    explorer.hidden_classes = [int(labels[lonely])]
    try:
        explorer.save_png(tmp_path / "h.png")
    finally:
        explorer.hidden_classes = []
    hidden = render.decode_png((tmp_path / "h.png").read_bytes())
    assert tuple(hidden[y, x]) == (255, 255, 255)
