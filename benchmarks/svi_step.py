"""One SVI step, ours compiled and not, against NumPyro's JAX-compiled step on the same models.

Cases (issue #17), float32 like NumPyro's default:
    earthquake-1k    N = 1,000 events, K = 3: q(Z) enumerated exactly, mean-field q(mu), q(lambda)
    earthquake-100k  N = 10^5, K = 10 (same)
    expgauss         x = (1,), 256 vectorised particles, theta learned with phi
    vae              batch 100, 784-400-400-200 networks, binary images

Ours: one :class:`inference.svi.SVIStep` (loss, backward, fused Adam, the loss read back), with
``get_elbo(name)`` (eager), ``get_elbo(name, jit=True)`` (TorchScript trace),
``get_elbo(name, jit="inductor")`` (the trace compiled by TorchInductor) and
``get_elbo(name, jit="step")`` (loss, gradient and Adam as one Inductor call). NumPyro: one jitted
``svi.update`` and ``block_until_ready``, with the same objective written for it: for the
earthquake, the exact expectation over q(Z) = Cat(r_n) that TraceEnum_ELBO computes for a
guide-enumerated Z,
``sum_nk r_nk [log pi_k + log N(x_n | mu_k, 1/tau) + log Pois(s_n | lambda_k) - log r_nk]``,
added with ``numpyro.factor`` (r from a param); expgauss with Trace_ELBO(num_particles=256);
the VAE's MLPs in jnp with TraceMeanField_ELBO.

Timing: variants interleaved, each ``--steps`` steps per round, the best of ``--repeats``
rounds, after one warm-up round. Compile time apart: ours is ``CompiledELBO.compile_seconds``
(the first steps' eager runs, probe, trace, compile and check; Inductor's depends on whether
its on-disk cache already holds the kernels: run twice to see both, or set
``TORCHINDUCTOR_CACHE_DIR`` to a new folder for a cold one); NumPyro's is its first
``update`` less one step. Printed: ms per step of each, and the fastest of ours / NumPyro's.

Run:  pip install -e ".[bench]"
      python benchmarks/svi_step.py [--cases earthquake-1k expgauss] [--steps 30]
             [--repeats 3] [--threads 2] [--backends torchscript inductor step]
             [--json FILE]
Without NumPyro installed, our two columns are measured and NumPyro's are left empty.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings

import pyro
import torch

from analytic.earthquake import Hyperparameters, initial_mean_field
from guides.earthquake import EarthquakeGuide
from guides.expgauss import ExpGaussGuide
from guides.vae import VAEGuide
from inference.estimators import get_elbo
from inference.svi import SVIStep
from ppl_models import earthquake
from ppl_models.expgauss import ExpGaussModel
from ppl_models.vae import VAEModel
from vilab.report import format_table

CASES = {
    "earthquake-1k": ("enum", "stl", "trace"),
    "earthquake-100k": ("enum",),
    "expgauss": ("trace", "meanfield", "stl"),
    "vae": ("meanfield", "trace", "stl"),
}
EARTHQUAKE_SIZES = {"earthquake-1k": (1_000, 3), "earthquake-100k": (100_000, 10)}
VAE_SIZES = (784, 200, 400, 2)  # data, latent, hidden, hidden layers
BATCH = 100


# --------------------------------------------------------------------------------------------
# Our steps
# --------------------------------------------------------------------------------------------


def _earthquake_data(case: str):
    N, K = EARTHQUAKE_SIZES[case]
    hp = Hyperparameters(num_clusters=K, tau=0.05, rho=1e-3, alpha=1.5, beta=0.1)
    X, S, *_ = earthquake.simulate(hp, N, seed=0, dtype=torch.float32)
    return X, S, hp


def our_step(case: str, estimator: str, jit: bool | str):
    """A callable taking one SVI step (returns the loss), and its ELBO object."""
    if case.startswith("earthquake"):
        X, S, hp = _earthquake_data(case)
        init = initial_mean_field(X, S, hp, torch.Generator().manual_seed(0))
        guide = EarthquakeGuide.for_svi(init, hp, enumerate=estimator != "trace")
        options = {"base": "enum"} if estimator == "stl" else {}
        elbo = get_elbo(estimator, jit=jit, max_plate_nesting=1, **options)
        step = SVIStep(earthquake.model, guide, elbo, 0.05)
        return (lambda: step(X, S, hp)), elbo
    if case == "expgauss":
        x = torch.tensor([1.0])
        model, guide = ExpGaussModel(0.1), ExpGaussGuide(torch.full_like(x, 20.0))
        elbo = get_elbo(estimator, jit=jit, num_particles=256, vectorize_particles=True,
                        max_plate_nesting=1)  # fmt: skip
        step = SVIStep(model, guide, elbo, 0.01)
        return (lambda: step(x)), elbo
    D, L, H, layers = VAE_SIZES
    torch.manual_seed(0)
    model, guide = VAEModel(D, L, H, layers), VAEGuide(D, L, H, layers)
    images = (torch.rand(BATCH, D, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    elbo = get_elbo(estimator, jit=jit, max_plate_nesting=1)
    step = SVIStep(model, guide, elbo, 1e-3)
    return (lambda: step(images, 60_000)), elbo


# --------------------------------------------------------------------------------------------
# NumPyro's steps (imported only when asked for and installed)
# --------------------------------------------------------------------------------------------


def numpyro_step(case: str):
    """A callable taking one jitted NumPyro SVI step (blocking), or None without NumPyro."""
    try:
        import jax
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as nd
        from numpyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
    except ImportError:
        return None

    if case.startswith("earthquake"):
        X, S, hp = _earthquake_data(case)
        init = initial_mean_field(X, S, hp, torch.Generator().manual_seed(0))
        X, S = jnp.asarray(X.numpy()), jnp.asarray(S.numpy())
        K, N = hp.num_clusters, X.shape[0]
        log_pi = jnp.log(jnp.asarray(hp.mixing, dtype=jnp.float32))

        def model(X, S):
            mu = numpyro.sample("mu", nd.Normal(0.0, hp.rho**-0.5).expand([K, 2]).to_event(2))
            lam = numpyro.sample("lam", nd.Gamma(hp.alpha, hp.beta).expand([K]).to_event(1))
            logits = numpyro.param("logits", jnp.zeros((N, K)))
            log_r = jax.nn.log_softmax(logits, -1)
            loglik = (
                log_pi
                + nd.Normal(mu, hp.tau**-0.5).log_prob(X[:, None, :]).sum(-1)
                + nd.Poisson(lam).log_prob(S[:, None])
            )
            numpyro.factor("z", (jnp.exp(log_r) * (loglik - log_r)).sum())

        def guide(X, S):
            m = numpyro.param("m", jnp.asarray(init.loc.float().numpy()))
            log_p = numpyro.param("log_p", jnp.log(jnp.asarray(init.precision.float().numpy())))
            log_a = numpyro.param("log_a", jnp.log(jnp.asarray(init.concentration.numpy())))
            log_b = numpyro.param("log_b", jnp.log(jnp.asarray(init.rate.numpy())))
            numpyro.sample("mu", nd.Normal(m, jnp.exp(-0.5 * log_p)[:, None]).to_event(2))
            numpyro.sample("lam", nd.Gamma(jnp.exp(log_a), jnp.exp(log_b)).to_event(1))

        svi, args, loss = SVI(model, guide, numpyro.optim.Adam(0.05), Trace_ELBO()), (X, S), None
    elif case == "expgauss":

        def model(x):
            theta = jnp.exp(numpyro.param("log_theta", jnp.log(0.1)))
            with numpyro.plate("data", x.shape[0]):
                z = numpyro.sample("z", nd.Exponential(theta))
                numpyro.sample("x", nd.Normal(z, 1.0), obs=x)

        def guide(x):
            phi = jnp.exp(numpyro.param("log_phi", jnp.full(x.shape, jnp.log(20.0))))
            with numpyro.plate("data", x.shape[0]):
                numpyro.sample("z", nd.Exponential(phi))

        loss = Trace_ELBO(num_particles=256)
        svi, args = SVI(model, guide, numpyro.optim.Adam(0.01), loss), (jnp.ones(1),)
    else:
        D, L, H, layers = VAE_SIZES
        keys = iter(jax.random.split(jax.random.PRNGKey(0), 16))

        def mlp(prefix, sizes, x):
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                w = numpyro.param(f"{prefix}w{i}", jax.random.normal(next(keys), (a, b)) / a**0.5)
                x = x @ w + numpyro.param(f"{prefix}b{i}", jnp.zeros(b))
                if i < len(sizes) - 2:
                    x = jax.nn.leaky_relu(x, 0.2)
            return x

        def model(x):
            with numpyro.plate("data", 60_000, subsample_size=x.shape[0]):
                z = numpyro.sample("z", nd.Normal(0.0, 1.0).expand([x.shape[0], L]).to_event(1))
                logits = mlp("dec", [L] + [H] * layers + [D], z)
                numpyro.sample("x", nd.Bernoulli(logits=logits).to_event(1), obs=x)

        def guide(x):
            out = mlp("enc", [D] + [H] * layers + [2 * L], x)
            loc, scale = out[:, :L], jax.nn.softplus(out[:, L:]) + 1e-4
            with numpyro.plate("data", 60_000, subsample_size=x.shape[0]):
                numpyro.sample("z", nd.Normal(loc, scale).to_event(1))

        images = jnp.asarray((torch.rand(BATCH, D) > 0.5).float().numpy())
        loss = TraceMeanField_ELBO()
        svi, args = SVI(model, guide, numpyro.optim.Adam(1e-3), loss), (images,)
    state = svi.init(jax.random.PRNGKey(0), *args)
    update = jax.jit(svi.update)
    holder = {"state": state}

    def step():
        holder["state"], value = update(holder["state"], *args)
        return value.block_until_ready()

    return step


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def _time(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def bench_case(case: str, estimators, backends, steps: int, repeats: int, numpyro: bool) -> dict:
    """Per-step seconds of each variant (best of ``repeats`` interleaved rounds) and compile
    times, for one case."""
    pyro.set_rng_seed(0)
    variants, compile_s = {}, {}
    for name in estimators:
        for jit in (False, *backends):
            fn, elbo = our_step(case, name, jit)
            fn()  # the first step: compiles the loss where jit
            fn()  # the second: compiles the whole step where jit="step"
            variants[(name, jit)] = fn
            if jit:
                compile_s[(name, jit)] = elbo.compile_seconds
                if elbo.uncompiled or getattr(elbo, "not_inductor", None):
                    raise RuntimeError(f"{case}/{name}/{jit} was not compiled: "
                                       f"{elbo.uncompiled or elbo.not_inductor}")  # fmt: skip
    if numpyro and (np_fn := numpyro_step(case)) is not None:
        start = time.perf_counter()
        np_fn()
        first = time.perf_counter() - start
        variants[("numpyro", None)] = np_fn
    best = dict.fromkeys(variants, math.inf)
    for round_ in range(repeats + 1):  # round 0 warms up (profiling executor, caches)
        for key, fn in variants.items():
            seconds = _time(fn, steps)
            if round_ > 0:
                best[key] = min(best[key], seconds)
    np_s = best.get(("numpyro", None))
    out = {}
    for name in estimators:
        row = {"eager_ms": 1e3 * best[(name, False)]}
        for jit in backends:
            row[f"{jit}_ms"] = 1e3 * best[(name, jit)]
            row[f"{jit}_compile_s"] = compile_s[(name, jit)]
        fastest = min(best[(name, jit)] for jit in (False, *backends))
        row["numpyro_ms"] = None if np_s is None else 1e3 * np_s
        row["fastest_over_numpyro"] = None if np_s is None else fastest / np_s
        row["numpyro_compile_s"] = None if np_s is None else first - np_s
        out[name] = row
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES),
                        help="which models (default: all four)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=30, help="steps per timed round (30)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; best kept (3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    parser.add_argument("--backends", nargs="+", choices=["torchscript", "inductor", "step"],
                        default=["torchscript", "inductor", "step"],
                        help="compiled variants timed beside eager (all three)")  # fmt: skip
    parser.add_argument("--no-numpyro", action="store_true", help="time ours only")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return parser


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    warnings.filterwarnings("ignore", category=FutureWarning)
    results = {}
    for case in args.cases:
        results[case] = bench_case(case, CASES[case], args.backends, args.steps, args.repeats,
                                   not args.no_numpyro)  # fmt: skip
    head = ["case", "estimator", "eager ms"]
    for jit in args.backends:
        head += [f"{jit} ms", f"{jit} compile s"]
    rows = [head + ["NumPyro ms", "fastest / NumPyro", "NumPyro compile s"]]
    for case, by_name in results.items():
        for name, r in by_name.items():
            row = [case, name, f"{r['eager_ms']:.2f}"]
            for jit in args.backends:
                row += [f"{r[f'{jit}_ms']:.2f}", f"{r[f'{jit}_compile_s']:.2f}"]
            rows.append(row + [_fmt(r["numpyro_ms"], ".2f"), _fmt(r["fastest_over_numpyro"], ".2f"),
                               _fmt(r["numpyro_compile_s"], ".2f")])  # fmt: skip
    print(f"SVI step, best of {args.repeats} interleaved rounds of {args.steps} steps, "
          f"{args.threads} torch thread(s)")  # fmt: skip
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, allow_nan=False)
    return results


if __name__ == "__main__":
    main(build_parser().parse_args())
