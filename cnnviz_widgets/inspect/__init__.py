"""Model inspection in plain PyTorch + NumPy: nothing here imports the widgets."""

from .capture import ActivationCapture, capture, inference_state, layer_names, resolve_layer
from .inputs import input_channels, model_device, to_batch
from .layers import LayerInfo, first_conv, layer_catalogue, spatial_layer, spatial_layers

__all__ = [
    "ActivationCapture",
    "LayerInfo",
    "capture",
    "first_conv",
    "inference_state",
    "input_channels",
    "layer_catalogue",
    "layer_names",
    "model_device",
    "resolve_layer",
    "spatial_layer",
    "spatial_layers",
    "to_batch",
]
