"""NumPyro's equivalent of the default ``vilab earthquake`` run, for benchmarks/end_to_end.py.

The same work, the NumPyro way: draw a catalog of 1,000 events from the model (K = 3, the
default hyperparameters of ``vilab earthquake``: tau = 0.01, rho = 1e-3, alpha = 1, beta = 0.1,
equal weights); fit the same mean field by 1,000 jitted SVI steps of Adam (lr 0.05), Z summed
out exactly as TraceEnum_ELBO does (``numpyro.factor`` of the expectation over q(Z)); write the
ELBO trace and the map as PNGs and a JSON summary. Run from a shell so that its imports count:

    python benchmarks/numpyro_earthquake.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as nd  # noqa: E402
from numpyro.infer import SVI, Trace_ELBO  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

N, K, STEPS = 1000, 3, 1000
TAU, RHO, ALPHA, BETA = 0.01, 1e-3, 1.0, 0.1


def simulate(seed: int = 0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0, RHO**-0.5, size=(K, 2))
    lam = rng.gamma(ALPHA, 1 / BETA, size=K)
    z = rng.integers(K, size=N)
    return rng.normal(mu[z], TAU**-0.5), rng.poisson(lam[z]).astype(float)


def model(X, S):
    mu = numpyro.sample("mu", nd.Normal(0.0, RHO**-0.5).expand([K, 2]).to_event(2))
    lam = numpyro.sample("lam", nd.Gamma(ALPHA, BETA).expand([K]).to_event(1))
    log_r = jax.nn.log_softmax(numpyro.param("logits", jnp.zeros((X.shape[0], K))), -1)
    loglik = (jnp.log(1.0 / K) + nd.Normal(mu, TAU**-0.5).log_prob(X[:, None, :]).sum(-1)
              + nd.Poisson(lam).log_prob(S[:, None]))  # fmt: skip
    numpyro.factor("z", (jnp.exp(log_r) * (loglik - log_r)).sum())


def guide(X, S):
    m = numpyro.param("m", X[:K])
    log_p = numpyro.param("log_p", jnp.zeros(K))
    log_a = numpyro.param("log_a", jnp.zeros(K))
    log_b = numpyro.param("log_b", jnp.zeros(K))
    numpyro.sample("mu", nd.Normal(m, jnp.exp(-0.5 * log_p)[:, None]).to_event(2))
    numpyro.sample("lam", nd.Gamma(jnp.exp(log_a), jnp.exp(log_b)).to_event(1))


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    X, S = simulate()
    X, S = jnp.asarray(X), jnp.asarray(S)
    svi = SVI(model, guide, numpyro.optim.Adam(0.05), Trace_ELBO())
    result = svi.run(jax.random.PRNGKey(0), STEPS, X, S, progress_bar=False)
    params, losses = result.params, np.asarray(result.losses)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.plot(-losses, label="SVI (Monte Carlo ELBO)")
    ax.set(xlabel="step", ylabel="ELBO")
    ax.legend()
    fig.savefig(os.path.join(out, "elbo_trace.png"), dpi=120)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    labels = np.asarray(params["logits"]).argmax(-1)
    ax.scatter(X[:, 0], X[:, 1], c=labels, s=4, label="events")
    ax.scatter(*np.asarray(params["m"]).T, marker="x", c="k", label="cluster means")
    ax.set(xlabel="longitude", ylabel="latitude")
    ax.legend()
    fig.savefig(os.path.join(out, "map.png"), dpi=120)
    summary = {"elbo": float(-losses[-1]), "means": np.asarray(params["m"]).tolist(),
               "rates": np.exp(np.asarray(params["log_a"] - params["log_b"])).tolist()}  # fmt: skip
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "numpyro-out")
