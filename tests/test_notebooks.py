"""Every notebook under notebooks/ runs top to bottom without an error.

The kernels run with CNNVIZ_OFFLINE=1, the notebooks' documented switch for offline runs:
torchvision models get random weights (`weights=None`, nothing is downloaded) and labelled
image folders are replaced by a small generated substitute set.
"""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_OFFLINE", "1")  # inherited by the kernel NotebookClient starts
    torch_home = tmp_path / "torch"  # an empty cache: weights already on this machine don't count
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    nb = nbformat.read(path, as_version=4)
    assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), (
        f"{path.name} is committed with outputs; clear them"
    )
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    downloaded = [p.name for p in torch_home.rglob("*") if p.is_file()]
    assert not downloaded, f"{path.name} downloaded {downloaded} despite CNNVIZ_OFFLINE=1"
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    widget_views = [
        o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widget_views, "the notebook shows no widget"
