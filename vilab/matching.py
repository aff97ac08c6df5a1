"""Matching the clusters of two fits (SVI vs CAVI, EM vs the truth): mixture labels are
arbitrary, so one fit's cluster k need not be the other's cluster k. The Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) pairs them by the smallest total Euclidean
distance between their means."""

from __future__ import annotations

import torch

__all__ = ["match_clusters"]


def match_clusters(reference: torch.Tensor, other: torch.Tensor) -> list[int]:
    """``perm`` such that ``other[perm[k]]`` is matched to ``reference[k]``.

    Args:
        reference, other: (K, 2) cluster means. Returns: a permutation of range(K) minimising
        sum_k |reference[k] - other[perm[k]]|.
    """
    cost = torch.cdist(reference, other).numpy()
    from scipy.optimize import linear_sum_assignment  # (scipy: imported when used)

    rows, cols = linear_sum_assignment(cost)
    return [int(c) for _, c in sorted(zip(rows, cols))]
