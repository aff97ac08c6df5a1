"""Closed-form CAVI for the earthquake mixture, in rooms: the hyperparameters, variational
parameters and checks (:mod:`.params`), the three updates and the exact ELBO (:mod:`.updates`),
k-means++ seeding (:mod:`.seeding`), relabelling (:mod:`.labels`), the collapsed joint density
(:mod:`.joint`), and the drivers: in memory (:mod:`.in_memory`), streamed over chunks
(:mod:`.streamed`) and stochastic (:mod:`.stochastic`). Pure torch; never imports Pyro."""

from analytic.earthquake.in_memory import cavi as cavi
from analytic.earthquake.joint import log_joint_marginal as log_joint_marginal
from analytic.earthquake.labels import best_label_order as best_label_order
from analytic.earthquake.labels import canonical_order as canonical_order
from analytic.earthquake.labels import label_order as label_order
from analytic.earthquake.labels import permute_clusters as permute_clusters
from analytic.earthquake.params import MAX_LOCATION as MAX_LOCATION
from analytic.earthquake.params import MAX_STRENGTH as MAX_STRENGTH
from analytic.earthquake.params import CaviResult as CaviResult
from analytic.earthquake.params import Hyperparameters as Hyperparameters
from analytic.earthquake.params import MeanField as MeanField
from analytic.earthquake.params import as_data as as_data
from analytic.earthquake.params import check_cavi_settings as check_cavi_settings
from analytic.earthquake.params import check_data as check_data
from analytic.earthquake.params import check_mean_field as check_mean_field
from analytic.earthquake.seeding import initial_mean_field as initial_mean_field
from analytic.earthquake.seeding import kmeans_plus_plus as kmeans_plus_plus
from analytic.earthquake.stochastic import StochasticResult as StochasticResult
from analytic.earthquake.stochastic import stochastic_cavi as stochastic_cavi
from analytic.earthquake.streamed import chunk_responsibilities as chunk_responsibilities
from analytic.earthquake.streamed import streamed_cavi as streamed_cavi
from analytic.earthquake.streamed import streamed_elbo as streamed_elbo
from analytic.earthquake.updates import SufficientStats as SufficientStats
from analytic.earthquake.updates import cavi_step as cavi_step
from analytic.earthquake.updates import elbo as elbo
from analytic.earthquake.updates import sufficient_stats as sufficient_stats
from analytic.earthquake.updates import update_assignments as update_assignments
from analytic.earthquake.updates import update_locations as update_locations
from analytic.earthquake.updates import update_rates as update_rates

__all__ = [
    "MAX_LOCATION",
    "MAX_STRENGTH",
    "CaviResult",
    "Hyperparameters",
    "MeanField",
    "StochasticResult",
    "SufficientStats",
    "as_data",
    "best_label_order",
    "canonical_order",
    "cavi",
    "cavi_step",
    "check_cavi_settings",
    "check_data",
    "check_mean_field",
    "chunk_responsibilities",
    "elbo",
    "initial_mean_field",
    "kmeans_plus_plus",
    "label_order",
    "log_joint_marginal",
    "permute_clusters",
    "stochastic_cavi",
    "streamed_cavi",
    "streamed_elbo",
    "sufficient_stats",
    "update_assignments",
    "update_locations",
    "update_rates",
]
