"""anywidget classes: traits and calls into inspect/ and render; no maths here."""

from .activations import FeatureMaps
from .filters import FilterGrid

__all__ = ["FeatureMaps", "FilterGrid"]
