"""CNNExplorer in a marimo app, as tests/e2e/test_marimo.py runs it: the offline digits demo
(the first CNNVIZ_APP_IMAGES images of its test split, 300 by default).

    marimo run tests/e2e/apps/explorer_marimo.py
"""

import marimo

app = marimo.App(width="full")


@app.cell
def _():
    import os

    import marimo as mo
    import torch

    from cnnviz_widgets import CNNExplorer
    from cnnviz_widgets.demo import load_demo

    model, digits, classes = load_demo(split="test")
    images = torch.utils.data.Subset(digits, range(int(os.environ.get("CNNVIZ_APP_IMAGES", 300))))
    explorer = mo.ui.anywidget(
        CNNExplorer(model, images, classes=classes, method="pca", layer="relu2")
    )
    explorer  # noqa: B018 - a cell shows its last expression
    return (explorer,)


if __name__ == "__main__":
    app.run()
