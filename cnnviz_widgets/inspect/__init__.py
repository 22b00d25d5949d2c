"""Model inspection in plain PyTorch + NumPy: nothing here imports the widgets."""

from .capture import ActivationCapture, capture, layer_names, resolve_layer
from .dataset import (
    FeatureConsumer,
    Features,
    TopActivations,
    TopKConsumer,
    dataset_pass,
    top_activations,
    weights_fingerprint,
)
from .embedding import embed, knn_agreement, neighbours, pca
from .features import clear_feature_cache, extract_features, feature_pass
from .inputs import input_channels, model_device, one_image, to_batch
from .items import DatasetItemError
from .layers import LayerInfo, first_conv, layer_catalogue, spatial_layer, spatial_layers
from .predict import class_probabilities, top_k
from .receptive import ReceptiveField, receptive_field, receptive_fields
from .view import eval_view, inference_view
from .wrappers import unwrap

__all__ = [
    "ActivationCapture",
    "DatasetItemError",
    "FeatureConsumer",
    "Features",
    "LayerInfo",
    "ReceptiveField",
    "TopActivations",
    "TopKConsumer",
    "capture",
    "class_probabilities",
    "clear_feature_cache",
    "dataset_pass",
    "embed",
    "eval_view",
    "extract_features",
    "feature_pass",
    "first_conv",
    "inference_view",
    "input_channels",
    "knn_agreement",
    "layer_catalogue",
    "layer_names",
    "model_device",
    "neighbours",
    "one_image",
    "pca",
    "receptive_field",
    "receptive_fields",
    "resolve_layer",
    "spatial_layer",
    "spatial_layers",
    "to_batch",
    "top_activations",
    "top_k",
    "unwrap",
    "weights_fingerprint",
]
