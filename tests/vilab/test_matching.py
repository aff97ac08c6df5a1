"""SVI's clusters are paired with CAVI's by the assignment of least total distance."""

from __future__ import annotations

import torch

from analytic.earthquake import MeanField, permute_clusters
from vilab.matching import match_clusters


def test_a_shuffled_copy_is_matched_back_to_its_order():
    reference = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [-7.0, 3.0]])
    shuffle = [2, 0, 3, 1]
    perm = match_clusters(reference, reference[shuffle] + 0.1)
    assert torch.equal(reference[shuffle][perm], reference)


def test_the_total_distance_is_minimised_where_greedy_pairing_is_not():
    """Greedy (each reference mean takes its nearest free one) pairs 0 with 0 (distance 0.5)
    and leaves 1 with 1 (distance 5.5): total 6.0; the optimum crosses them: 1.5 + 2.5 = 4.0."""
    reference = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    other = torch.tensor([[0.5, 0.0], [-2.5, 0.0]])
    assert match_clusters(reference, other) == [1, 0]


def test_permuting_a_mean_field_moves_every_field_together():
    g = torch.Generator().manual_seed(0)
    q = MeanField(
        torch.softmax(torch.randn(5, 3, generator=g), -1),
        torch.randn(3, 2, generator=g),
        torch.tensor([1.0, 2.0, 3.0]),
        torch.tensor([4.0, 5.0, 6.0]),
        torch.tensor([7.0, 8.0, 9.0]),
    )
    p = permute_clusters(q, [2, 0, 1])
    assert torch.equal(p.probs, q.probs[:, [2, 0, 1]]) and torch.equal(p.loc, q.loc[[2, 0, 1]])
    assert p.precision.tolist() == [3.0, 1.0, 2.0]
    assert p.concentration.tolist() == [6.0, 4.0, 5.0] and p.rate.tolist() == [9.0, 7.0, 8.0]
