"""Densities known up to a constant: self-normalised importance sampling (:mod:`.snis`) and the
energy-based model trained with it (:mod:`.ebm`)."""

from inference.density.ebm import EbmTraining as EbmTraining
from inference.density.ebm import EnergyMLP as EnergyMLP
from inference.density.ebm import defensive_mixture as defensive_mixture
from inference.density.ebm import importance_log_normaliser as importance_log_normaliser
from inference.density.ebm import quadrature_log_normaliser as quadrature_log_normaliser
from inference.density.ebm import snis_surrogate as snis_surrogate
from inference.density.ebm import train_ebm as train_ebm
from inference.density.snis import LogNormaliser as LogNormaliser
from inference.density.snis import effective_sample_size as effective_sample_size
from inference.density.snis import log_normaliser as log_normaliser
from inference.density.snis import normalised_weights as normalised_weights
from inference.density.snis import snis_mean as snis_mean

__all__ = [
    "EbmTraining",
    "EnergyMLP",
    "LogNormaliser",
    "defensive_mixture",
    "effective_sample_size",
    "importance_log_normaliser",
    "log_normaliser",
    "normalised_weights",
    "quadrature_log_normaliser",
    "snis_mean",
    "snis_surrogate",
    "train_ebm",
]
