"""Automatic CAVI (variational message passing) derived from a conditionally conjugate Pyro
model: the driver (:mod:`.auto`), the structure analysis (:mod:`.analysis`), the exponential
families (:mod:`.families`), the sweeps (:mod:`.sweeps`) and the tensor contractions they use
(:mod:`.contract`); over data in chunks and across processes (:mod:`.stream`), and
stochastic (:mod:`.stochastic`)."""

from inference.cavi.analysis import ModelStructure as ModelStructure
from inference.cavi.analysis import analyse as analyse
from inference.cavi.auto import AutoCaviGuide as AutoCaviGuide
from inference.cavi.auto import AutoCaviResult as AutoCaviResult
from inference.cavi.auto import auto_cavi as auto_cavi
from inference.cavi.stochastic import StochasticAutoCaviResult as StochasticAutoCaviResult
from inference.cavi.stochastic import stochastic_auto_cavi as stochastic_auto_cavi

__all__ = [
    "AutoCaviGuide",
    "AutoCaviResult",
    "ModelStructure",
    "StochasticAutoCaviResult",
    "analyse",
    "auto_cavi",
    "stochastic_auto_cavi",
]
