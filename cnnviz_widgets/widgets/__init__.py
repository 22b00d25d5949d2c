"""anywidget classes: traits and calls into inspect/ and render; no maths here."""

from .activations import FeatureMaps
from .embedding import EmbeddingExplorer
from .filters import FilterGrid
from .occlusion import OcclusionMap
from .patches import TopPatches

__all__ = ["EmbeddingExplorer", "FeatureMaps", "FilterGrid", "OcclusionMap", "TopPatches"]
