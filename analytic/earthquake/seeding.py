"""Where CAVI starts: k-means++ seeding of the cluster centres (Arthur & Vassilvitskii 2007,
"k-means++: The Advantages of Careful Seeding", Sec. 2.2), and the mean field built around them
(:func:`initial_mean_field`), as scikit-learn seeds its Gaussian mixtures."""

from __future__ import annotations

import torch

from analytic.earthquake.params import Hyperparameters, MeanField, check_data

__all__ = ["initial_mean_field", "kmeans_plus_plus"]


def kmeans_plus_plus(
    X: torch.Tensor, num_clusters: int, generator: torch.Generator
) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each new centre is an event drawn with
    probability proportional to its squared distance to the nearest centre chosen so far.

    Args:
        X: (N, 2); num_clusters: K; generator: a CPU ``torch.Generator``.

    Returns:
        centres: (K, 2), rows of X.
    """
    N = X.shape[0]
    first = int(torch.randint(N, (1,), generator=generator))
    centres = [X[first]]
    sq_dist = (X - X[first]).pow(2).sum(-1)
    for _ in range(1, num_clusters):
        weights = sq_dist.double().cpu()
        if float(weights.sum()) <= 0:  # fewer distinct points than clusters
            weights = torch.ones(N, dtype=torch.float64)
        i = int(torch.multinomial(weights, 1, generator=generator))
        centres.append(X[i])
        sq_dist = torch.minimum(sq_dist, (X - X[i]).pow(2).sum(-1))
    return torch.stack(centres)


def initial_mean_field(
    X: torch.Tensor, S: torch.Tensor, hp: Hyperparameters, generator: torch.Generator
) -> MeanField:
    """A starting point for CAVI or SVI, as if every cluster had seen an equal share N/K of the
    events: centres seeded by k-means++ (Arthur & Vassilvitskii 2007), and, when pi is not
    uniform, labelled so that the centre nearest to the most events gets the largest pi;
    q(mu_k) with precision rho + tau N/K; q(lambda_k) with a = alpha + mean(S) N/K and
    b = beta + N/K (so E[lambda_k] is about the mean strength); uniform responsibilities.
    Starting the variance parameters at the right scale matters for SVI, whose noisy steps move
    them slowly.

    Returns:
        :class:`MeanField` in the dtype and device of X.
    """
    check_data(X, S)
    N, K = X.shape[0], hp.num_clusters
    kw = {"dtype": X.dtype, "device": X.device}
    share = torch.full((K,), N / K, **kw)
    mean_s = S.to(X.dtype).mean()
    centres = kmeans_plus_plus(X, K, generator)
    if len(set(hp.mixing)) > 1:  # labels matter: the largest pi to the most crowded centre
        nearest = torch.cdist(X, centres).argmin(-1)
        crowd = torch.bincount(nearest, minlength=K).to(X.dtype)
        mixing = torch.tensor(hp.mixing, **kw)
        perm = torch.empty(K, dtype=torch.long, device=X.device)
        perm[torch.argsort(mixing, descending=True, stable=True)] = torch.argsort(
            crowd, descending=True, stable=True
        )
        centres = centres[perm]
    return MeanField(
        probs=torch.full((N, K), 1.0 / K, **kw),
        loc=centres,
        precision=hp.rho + hp.tau * share,
        concentration=hp.alpha + mean_s * share,
        rate=hp.beta + share,
    )
