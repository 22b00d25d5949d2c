"""cnnviz-widgets: Jupyter widgets that show what happens inside a convolutional network."""

from .inspect import ActivationCapture, LayerInfo, capture, layer_catalogue
from .widgets import FeatureMaps, FilterGrid

__version__ = "0.1.0"

__all__ = [
    "ActivationCapture",
    "FeatureMaps",
    "FilterGrid",
    "LayerInfo",
    "capture",
    "layer_catalogue",
]
