"""Cluster labels: relabelling a mean field (:func:`permute_clusters`), the label order that
raises the ELBO most when pi is not uniform (:func:`label_order`, :func:`best_label_order`: the
ELBO depends on the labels only through sum_k N_k log pi_k, maximised by matching sizes to
weights), and the canonical order CAVI runs in (:func:`canonical_order`)."""

from __future__ import annotations

import dataclasses

import torch

from analytic.earthquake.params import Hyperparameters, MeanField

__all__ = ["best_label_order", "canonical_order", "label_order", "permute_clusters"]


def permute_clusters(q: MeanField, perm) -> MeanField:
    """``q`` relabelled: cluster ``perm[k]`` of q becomes cluster k (every field moves with it).

    Args:
        q: :class:`MeanField` with K clusters (``probs`` may be None, as in a streamed run);
            perm: a permutation of range(K) (list or tensor).
    """
    perm = torch.as_tensor(perm, dtype=torch.long, device=q.loc.device)
    probs = None if q.probs is None else q.probs[:, perm]
    return MeanField(probs, q.loc[perm], q.precision[perm], q.concentration[perm], q.rate[perm])


def label_order(counts: torch.Tensor, hp: Hyperparameters) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The relabelling with the highest ELBO for clusters of sizes ``counts``, and its gain.

    Relabelling moves whole clusters, so of all ELBO terms (:func:`elbo_from_stats`) only
    E log p(Z) = sum_k N_k log pi_k changes: the priors on mu and lambda are the same for every
    cluster, and every other term follows its cluster. The best relabelling maximises
    sum_k N_{perm[k]} log pi_k, and by the rearrangement inequality (Hardy, Littlewood & Polya,
    Inequalities, Thm. 368) that pairs the clusters sorted by N_k with the labels sorted by
    pi_k: no search over the K! orders is needed.

    Args:
        counts: N_k = sum_n r_nk, shape (K,).

    Returns:
        perm: (K,) long, for :func:`permute_clusters`; gain: 0-dim, the ELBO increase (>= 0).
    """
    log_pi = torch.log(torch.tensor(hp.mixing, dtype=counts.dtype, device=counts.device))
    perm = torch.empty_like(counts, dtype=torch.long)
    perm[torch.argsort(log_pi, descending=True, stable=True)] = torch.argsort(
        counts, descending=True, stable=True
    )
    gain = ((counts[perm] - counts) * log_pi).sum()
    return perm, gain


def best_label_order(q: MeanField, hp: Hyperparameters) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`label_order` for the cluster sizes ``N_k = sum_n r_nk`` of ``q.probs``."""
    return label_order(q.probs.sum(0), hp)


def canonical_order(hp: Hyperparameters) -> tuple[list[int], list[int], Hyperparameters]:
    """(order, back, canonical): the labels sorted by pi decreasing (stable, so uniform pi keeps
    every label where it is), the permutation that maps them back, and hp with pi in that
    order. CAVI runs in this order, so its result does not depend on the order pi is given in."""
    order = sorted(range(hp.num_clusters), key=lambda k: -hp.mixing[k])
    back = [order.index(k) for k in range(hp.num_clusters)]
    return order, back, dataclasses.replace(hp, mixing=tuple(hp.mixing[k] for k in order))
