"""anywidget classes: traits and calls into inspect/ and render; no maths here."""

from .activations import FeatureMaps
from .compose import class_probabilities_figure, embedding_figure, link_selection
from .embedding import EmbeddingExplorer
from .explorer import CNNExplorer
from .filters import FilterGrid
from .occlusion import OcclusionMap
from .patches import TopPatches

__all__ = [
    "CNNExplorer",
    "EmbeddingExplorer",
    "FeatureMaps",
    "FilterGrid",
    "OcclusionMap",
    "TopPatches",
    "class_probabilities_figure",
    "embedding_figure",
    "link_selection",
]
