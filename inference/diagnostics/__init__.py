"""ArviZ diagnostics for variational fits: InferenceData from any fitted guide (:mod:`.idata`),
PSIS k-hat (:mod:`.psis`), NUTS as the reference posterior (:mod:`.nuts`), and their figures
(:mod:`.plots`). Importing it loads ArviZ (slow), so ``import inference`` does not."""

from inference.diagnostics.idata import psis_inference_data as psis_inference_data
from inference.diagnostics.idata import to_inference_data as to_inference_data
from inference.diagnostics.nuts import NutsComparison as NutsComparison
from inference.diagnostics.nuts import NutsConvergenceWarning as NutsConvergenceWarning
from inference.diagnostics.nuts import compare_with_nuts as compare_with_nuts
from inference.diagnostics.nuts import interval_overlap as interval_overlap
from inference.diagnostics.plots import forest_plot as forest_plot
from inference.diagnostics.plots import khat_plot as khat_plot
from inference.diagnostics.plots import standardise as standardise
from inference.diagnostics.psis import GOOD_KHAT as GOOD_KHAT
from inference.diagnostics.psis import USABLE_KHAT as USABLE_KHAT
from inference.diagnostics.psis import PsisResult as PsisResult
from inference.diagnostics.psis import guide_log_weights as guide_log_weights
from inference.diagnostics.psis import psis_check as psis_check
from inference.diagnostics.psis import psis_from_log_weights as psis_from_log_weights
from inference.diagnostics.psis import verdict as verdict

__all__ = [
    "GOOD_KHAT",
    "USABLE_KHAT",
    "NutsComparison",
    "NutsConvergenceWarning",
    "PsisResult",
    "compare_with_nuts",
    "forest_plot",
    "guide_log_weights",
    "interval_overlap",
    "khat_plot",
    "psis_check",
    "psis_from_log_weights",
    "psis_inference_data",
    "standardise",
    "to_inference_data",
    "verdict",
]
