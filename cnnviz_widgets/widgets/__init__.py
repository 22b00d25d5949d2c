"""anywidget classes: traits and calls into inspect/ and render; no maths here."""

from .activations import FeatureMaps
from .filters import FilterGrid
from .occlusion import OcclusionMap
from .patches import TopPatches

__all__ = ["FeatureMaps", "FilterGrid", "OcclusionMap", "TopPatches"]
