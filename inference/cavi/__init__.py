"""Automatic CAVI (variational message passing) derived from a conditionally conjugate Pyro
model: the driver (:mod:`.auto`), the structure analysis (:mod:`.analysis`), the exponential
families (:mod:`.families`), the sweeps (:mod:`.sweeps`) and the tensor contractions they use
(:mod:`.contract`)."""

from inference.cavi.analysis import ModelStructure as ModelStructure
from inference.cavi.analysis import analyse as analyse
from inference.cavi.auto import AutoCaviGuide as AutoCaviGuide
from inference.cavi.auto import AutoCaviResult as AutoCaviResult
from inference.cavi.auto import auto_cavi as auto_cavi

__all__ = ["AutoCaviGuide", "AutoCaviResult", "ModelStructure", "analyse", "auto_cavi"]
