"""cnnviz-widgets: Jupyter widgets that show what happens inside a convolutional network."""

from .inspect import (
    ActivationCapture,
    LayerInfo,
    ReceptiveField,
    TopActivations,
    capture,
    dataset_pass,
    embed,
    extract_features,
    knn_agreement,
    layer_catalogue,
    neighbours,
    receptive_field,
    top_activations,
)
from .inspect.occlusion import OcclusionResult, occlusion_map, occlusion_maps
from .widgets import (
    CNNExplorer,
    EmbeddingExplorer,
    FeatureMaps,
    FilterGrid,
    OcclusionMap,
    TopPatches,
    class_probabilities_figure,
    embedding_figure,
    link_selection,
)

__version__ = "0.1.0"

__all__ = [
    "ActivationCapture",
    "CNNExplorer",
    "EmbeddingExplorer",
    "FeatureMaps",
    "FilterGrid",
    "LayerInfo",
    "OcclusionMap",
    "OcclusionResult",
    "ReceptiveField",
    "TopActivations",
    "TopPatches",
    "capture",
    "class_probabilities_figure",
    "dataset_pass",
    "embed",
    "embedding_figure",
    "extract_features",
    "knn_agreement",
    "layer_catalogue",
    "link_selection",
    "neighbours",
    "occlusion_map",
    "occlusion_maps",
    "receptive_field",
    "top_activations",
]
