"""Seconds per CAVI sweep, ELBO included: automatic CAVI derived from the Pyro model
(:func:`inference.cavi.auto_cavi`) against two peers, in the same run:

1. the hand-written sweep of :func:`analytic.earthquake.cavi`, on the earthquake mixture, same
   data, same start. The hand sweep is timed as (a fit of 1 + m sweeps - a fit of 1 sweep) / m,
   so its set-up is excluded;
2. BayesPy's variational message passing (``VB.update``, one iteration = one sweep with its
   lower bound) on Bayesian linear regression with a Gamma noise precision (N x D design) and a
   Gaussian mixture with full covariances (MultivariateNormal means, Wishart precisions; N
   points in 2-d, K components) and latent Dirichlet allocation, same data and priors.

auto-CAVI reports the time of its sweeps apart from the one-off analysis of the model's trace
(``sweep_seconds``), also reported. Interleaved runs, best of ``--repeats``; float64.

Run:  python benchmarks/auto_cavi.py [--sizes 10000 100000] [--sweeps 20] [--repeats 3]
      [--peer-n 100000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from analytic.earthquake import Hyperparameters, cavi, initial_mean_field
from inference.cavi import auto_cavi
from ppl_models.earthquake import model, simulate


def _hand(X, S, hp, q0, sweeps: int) -> float:
    def run(max_iter):
        start = time.perf_counter()
        cavi(X, S, hp, max_iter=max_iter, tol=0.0, init=q0)
        return time.perf_counter() - start

    return (run(1 + sweeps) - run(1)) / sweeps


def _auto(X, S, hp, q0, sweeps: int) -> tuple[float, float]:
    init = {
        "mu": {"loc": q0.loc, "scale": q0.precision.rsqrt()[:, None]},
        "lam": {"concentration": q0.concentration, "rate": q0.rate},
    }
    result = auto_cavi(model, X, S, hp, num_steps=sweeps, tol=0.0, init=init)
    return result.sweep_seconds / result.num_steps, result.analysis_seconds


def _regression(n: int, d: int, gen: torch.Generator):
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = X @ torch.linspace(-1, 1, d, dtype=torch.float64) + 0.5 * torch.randn(
        n, generator=gen, dtype=torch.float64
    )

    def model(X, y):
        w = pyro.sample("w", dist.Normal(torch.zeros(d, dtype=X.dtype), 2.0).to_event(1))
        tau = pyro.sample("tau", dist.Gamma(torch.tensor(1.0, dtype=X.dtype), 1.0))
        with pyro.plate("n", len(y)):
            pyro.sample("y", dist.Normal(X @ w, tau**-0.5), obs=y)

    def bayespy(bn):
        w, tau = bn.GaussianARD(0, 1 / 4.0, shape=(d,)), bn.Gamma(1.0, 1.0)
        obs = bn.GaussianARD(bn.SumMultiply("i,i", X.numpy(), w), tau)
        obs.observe(y.numpy())
        return [obs, w, tau]

    return model, (X, y), None, bayespy


def _mixture(n: int, k: int, gen: torch.Generator):
    """A Gaussian mixture with full covariances: Dirichlet weights, MultivariateNormal means,
    Wishart precisions (BayesPy's Wishart takes the inverse scale)."""
    centres = 6.0 * torch.randn(k, 2, generator=gen, dtype=torch.float64)
    labels = torch.randint(k, (n,), generator=gen)
    X = centres[labels] + torch.randn(n, 2, generator=gen, dtype=torch.float64)
    start = centres + 0.5 * torch.randn(k, 2, generator=gen, dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)

    def model(X):
        pi = pyro.sample("pi", dist.Dirichlet(torch.full((k,), 1.5, dtype=X.dtype)))
        with pyro.plate("k", k):
            mu = pyro.sample("mu", dist.MultivariateNormal(torch.zeros(2, dtype=X.dtype),
                                                           100.0 * eye))  # fmt: skip
            L = pyro.sample("L", dist.Wishart(torch.tensor(4.0, dtype=X.dtype),
                                              covariance_matrix=eye / 4.0))  # fmt: skip
        with pyro.plate("n", len(X)):
            z = pyro.sample("z", dist.Categorical(pi))
            pyro.sample("x", dist.MultivariateNormal(Vindex(mu)[..., z, :],
                                                     precision_matrix=Vindex(L)[..., z, :, :]),
                        obs=X)  # fmt: skip

    init = {"mu": {"loc": start, "covariance_matrix": 1e-4 * eye.expand(k, 2, 2)},
            "L": {"df": torch.full((k,), 4.0, dtype=torch.float64),
                  "covariance_matrix": eye.expand(k, 2, 2) / 4.0}}  # fmt: skip

    def bayespy(bn):
        pi = bn.Dirichlet(np.full(k, 1.5))
        z = bn.Categorical(pi, plates=(n,))
        mu = bn.Gaussian(np.zeros(2), np.eye(2) / 100.0, plates=(k,))
        Lam = bn.Wishart(4.0, 4.0 * np.eye(2), plates=(k,))
        obs = bn.Mixture(z, bn.Gaussian, mu, Lam)
        obs.observe(X.numpy())
        mu.initialize_from_value(start.numpy())
        return [obs, z, mu, Lam, pi]

    return model, (X,), init, bayespy


def _lda(tokens: int, gen: torch.Generator):
    """Latent Dirichlet allocation (Blei, Ng & Jordan 2003): K = 10 topics over a vocabulary of
    1,000 words, 1,000 documents, ``tokens`` words drawn from the model itself. Each engine
    starts from its own random responsibilities, so the bounds after the timed sweeps are not
    compared."""
    docs, vocab, k = 1000, 1000, 10
    rng = np.random.default_rng(0)  # torch's Dirichlet sampler takes no generator
    theta = torch.from_numpy(rng.dirichlet(np.full(k, 0.5), size=docs))
    phi = torch.from_numpy(rng.dirichlet(np.full(vocab, 0.1), size=k))
    doc = torch.randint(docs, (tokens,), generator=gen)
    topic = torch.multinomial(theta[doc], 1, generator=gen).squeeze(-1)
    words = torch.multinomial(phi[topic], 1, generator=gen).squeeze(-1)

    def model(words, doc):
        with pyro.plate("topics", k):
            topic_words = pyro.sample(
                "phi", dist.Dirichlet(torch.full((vocab,), 0.1, dtype=torch.float64))
            )
        with pyro.plate("docs", docs):
            doc_topics = pyro.sample(
                "theta", dist.Dirichlet(torch.full((k,), 0.5, dtype=torch.float64))
            )
        with pyro.plate("tokens", len(words)):
            z = pyro.sample("z", dist.Categorical(doc_topics[doc]))
            pyro.sample("w", dist.Categorical(Vindex(topic_words)[..., z, :]), obs=words)

    def bayespy(bn):
        from bayespy.inference.vmp.nodes.categorical import CategoricalMoments

        p_topic = bn.Dirichlet(np.full(k, 0.5), plates=(docs,))
        p_word = bn.Dirichlet(np.full(vocab, 0.1), plates=(k,))
        index = bn.Constant(CategoricalMoments(docs), doc.numpy())
        topics = bn.Categorical(bn.Gate(index, p_topic), plates=(tokens,))
        obs = bn.Categorical(bn.Gate(topics, p_word))
        obs.observe(words.numpy())
        topics.initialize_from_random()
        return [obs, topics, p_topic, p_word]

    return model, (words, doc), None, bayespy


def _versus_bayespy(args) -> list:
    """Seconds per sweep of auto-CAVI and of BayesPy on the same models (best of repeats)."""
    import bayespy.nodes as bn  # the peer: imported only when this part runs
    from bayespy.inference import VB

    gen = torch.Generator().manual_seed(0)
    models = {
        f"linear regression, N={args.peer_n}, D=20": _regression(args.peer_n, 20, gen),
        f"full-covariance GMM, N={args.peer_n}, K=10, D=2": _mixture(args.peer_n, 10, gen),
        f"LDA, {args.peer_n} tokens, K=10, V=1000": _lda(args.peer_n, gen),
    }
    rows = []
    print(f"\nauto-CAVI against BayesPy (VB.update), seconds per sweep, best of {args.repeats}")
    print(f"{'model':<40}  {'BayesPy (ms)':>12}  {'auto (ms)':>10}  {'ratio auto/BayesPy':>18}  "
          f"{'bound gap':>9}")  # fmt: skip
    for name, (peer_model, margs, init, build) in models.items():
        theirs, ours = [], []
        for _ in range(args.repeats):
            Q = VB(*build(bn))
            Q.update(repeat=1, verbose=False)  # the first iteration sets BayesPy up
            start = time.perf_counter()
            Q.update(repeat=args.sweeps, tol=0.0, verbose=False)
            theirs.append((time.perf_counter() - start) / args.sweeps)
            fit = auto_cavi(peer_model, *margs, num_steps=args.sweeps + 1, tol=0.0, init=init,
                            check_draws=0)  # fmt: skip
            ours.append(fit.sweep_seconds / fit.num_steps)
        gap = abs(float(fit.elbo) - Q.compute_lowerbound()) / abs(float(fit.elbo))
        gap = gap if init is not None or "LDA" not in name else None  # different starts
        b, a = min(theirs), min(ours)
        rows.append({"model": name, "bayespy_s": b, "auto_s": a, "ratio": a / b, "gap": gap})
        shown = f"{gap:>9.1e}" if gap is not None else f"{'-':>9}"
        print(f"{name:<40}  {1e3 * b:>12.2f}  {1e3 * a:>10.2f}  {a / b:>18.2f}  {shown}")
    return rows


def main(args) -> dict:
    hp = Hyperparameters(args.k)
    rows = []
    print(
        f"CAVI seconds per sweep (ELBO included), earthquake mixture, K={args.k}, float64, "
        f"torch threads={torch.get_num_threads()}, best of {args.repeats} interleaved"
    )
    print(f"{'N':>9}  {'hand (ms)':>10}  {'auto (ms)':>10}  {'ratio auto/hand':>15}  "
          f"{'auto analysis (s)':>17}")  # fmt: skip
    for n in args.sizes:
        X, S, *_ = simulate(hp, n, seed=0)
        q0 = initial_mean_field(X, S, hp, torch.Generator().manual_seed(0))
        _hand(X, S, hp, q0, 1), _auto(X, S, hp, q0, 1)  # warm-up
        hand, auto, analysis = [], [], []
        for _ in range(args.repeats):
            hand.append(_hand(X, S, hp, q0, args.sweeps))
            a, b = _auto(X, S, hp, q0, args.sweeps)
            auto.append(a)
            analysis.append(b)
        h, a = min(hand), min(auto)
        rows.append({"n": n, "hand_s": h, "auto_s": a, "ratio": a / h,
                     "analysis_s": min(analysis)})  # fmt: skip
        print(f"{n:>9}  {1e3 * h:>10.2f}  {1e3 * a:>10.2f}  {a / h:>15.2f}  {min(analysis):>17.2f}")
    peers = _versus_bayespy(args) if args.peer_n else []
    return {"rows": rows, "bayespy": peers}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="numbers of events N (default 1e4 1e5)")  # fmt: skip
    parser.add_argument("--k", type=int, default=10, help="clusters K (default 10)")
    parser.add_argument("--sweeps", type=int, default=20, help="sweeps timed (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats, best kept (default 3)")
    parser.add_argument("--peer-n", type=int, default=100_000,
                        help="N of the models timed against BayesPy (1e5; 0 skips)")  # fmt: skip
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
