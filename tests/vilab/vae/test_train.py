"""The Bernoulli VAE: Pyro's losses against the source's closed form, the IWAE bound,
training, and exact resume. Tiny networks on a few images (real MNIST when the shared files
are there, generated IDX files otherwise)."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

from guides.vae import VAEGuide
from inference.data import binarize, load_mnist
from inference.estimators import get_elbo
from ppl_models.vae import MAX_PLATE_NESTING, VAEModel
from tests.conftest import SHARED_DATA
from tests.idx_files import write_mnist_dir
from vilab.vae.checkpoint import load_checkpoint
from vilab.vae.evaluate import importance_weighted_bound, log_weights, negative_elbo
from vilab.vae.plain import source_loss
from vilab.vae.train import VAEConfig, train_vae

TINY = {"latent_dim": 3, "hidden_dim": 16}


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """Real MNIST if shared, else generated files; 200 train / 64 test images, float64."""
    folder = SHARED_DATA / "mnist"
    if not folder.is_dir():
        folder = write_mnist_dir(tmp_path_factory.mktemp("mnist"), num_train=200, num_test=64)
    data = load_mnist(folder)
    return data.train_images[:200].double(), data.test_images[:64].double()


def _nets(seed=0, D=784):
    torch.manual_seed(seed)
    return VAEModel(D, 3, 16), VAEGuide(D, 3, 16)


def test_meanfield_loss_equals_the_source_closed_form_given_the_same_eps(mnist):
    """TraceMeanField_ELBO on a batch = BCE + closed-form Gaussian KL (rtol 1e-6), with eps
    recovered from the z the guide drew under the same seed."""
    x = binarize(mnist[0][:16], "round")
    model, guide = _nets()
    pyro.set_rng_seed(7)
    loss = get_elbo("meanfield", max_plate_nesting=MAX_PLATE_NESTING)(model, guide)(x)
    pyro.set_rng_seed(7)
    z = pyro.poutine.trace(guide).get_trace(x).nodes["z"]["value"]
    loc, scale = guide.encoder(x)
    expected = source_loss(model, guide, x, (z - loc) / scale)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_trace_elbo_equals_the_source_loss_in_expectation(mnist):
    """Trace_ELBO (Monte Carlo KL) and the closed-form-KL loss: 20 batches of 500 vectorised
    particles each; the means agree within 4 standard errors of their difference."""
    x = binarize(mnist[0][:8], "round")
    model, guide = _nets()
    kw = {"num_particles": 500, "vectorize_particles": True, "max_plate_nesting": 1}
    trace = get_elbo("trace", **kw)(model, guide)
    meanfield = get_elbo("meanfield", **kw)(model, guide)
    with torch.no_grad():
        a = torch.tensor([trace(x).item() for _ in range(20)])
        b = torch.tensor([meanfield(x).item() for _ in range(20)])
    se = math.sqrt(a.var().item() / 20 + b.var().item() / 20)
    assert abs(a.mean().item() - b.mean().item()) < 4 * se


def test_importance_weighted_bound_is_above_the_elbo_and_rises_with_k(mnist):
    """64 test images, each repeated 20 times (independent draws): the mean of L_1 equals the
    mean ELBO within 4 SE; L_10 and L_100 are above L_1 and rising (Burda et al. 2016,
    Theorem 1), each step by more than 4 SE."""
    x = binarize(mnist[1], "round").repeat(20, 1)
    model, guide = _nets()
    gen = torch.Generator().manual_seed(0)
    bounds = {k: importance_weighted_bound(model, guide, x, k, gen) for k in (1, 10, 100)}
    elbo = -negative_elbo(model, guide, x, gen)
    se = math.sqrt(bounds[1].var().item() / len(x) + elbo.var().item() / len(x))
    assert abs((bounds[1] - elbo).mean().item()) < 4 * se
    for lo, hi in ((1, 10), (10, 100)):
        diff = bounds[hi] - bounds[lo]
        assert diff.mean().item() > 4 * diff.std().item() / math.sqrt(len(x))
    assert log_weights(model, guide, x[:5], 7, gen).shape == (7, 5)


def test_log_weights_equal_torch_distributions_where_every_term_is_large(mnist):
    """log w = log Bernoulli(x | g(z)) + log N(z | 0, I) - log N(z | mu, sigma^2) with every
    density from ``torch.distributions``, at the same eps (same generator seed). The encoder
    is perturbed so that sigma ~ e^-2.5 and mu ~ 3: then -sum log sigma is +7.5 nats per image
    (3 latents) and |mu|^2 / 2 is ~13, so dropping either term, or a sign, is off by far more
    than the 1e-10 allowed (at untrained weights sigma ~ 1 and log sigma ~ 0)."""
    from torch.distributions import Bernoulli, Independent, Normal

    x = binarize(mnist[1], "round")[:16]
    model, guide = _nets()
    with torch.no_grad():
        guide.encoder.log_var.bias.fill_(-5.0)
        guide.encoder.loc.bias.fill_(3.0)
    lw = log_weights(model, guide, x, 4, torch.Generator().manual_seed(7))
    loc, scale = guide.encoder(x)
    eps = torch.randn((4, *loc.shape), generator=torch.Generator().manual_seed(7))
    z = loc + scale * eps
    expected = (
        Independent(Bernoulli(logits=model.decoder(z)), 1).log_prob(x)
        + Independent(Normal(torch.zeros_like(z), 1.0), 1).log_prob(z)
        - Independent(Normal(loc, scale), 1).log_prob(z)
    )
    assert -torch.log(scale).sum(-1).mean() > 7.0  # the term that was invisible before
    torch.testing.assert_close(lw, expected.detach(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("estimator", ["trace", "meanfield", "stl"])
def test_a_few_steps_of_each_estimator_lower_the_loss(mnist, estimator):
    """One epoch of 200 images (batch 20, lr 1e-2): the test -ELBO falls by > 5 nats from
    the untrained network's (the first epochs of a VAE gain tens of nats per image)."""
    train, test = mnist
    config = VAEConfig(**TINY, estimator=estimator, batch_size=20, lr=1e-2)
    model, guide = _nets()  # the same initial weights as train_vae with seed 0
    before = negative_elbo(model, guide, binarize(test, "round"),
                           torch.Generator().manual_seed(2)).mean().item()  # fmt: skip
    result = train_vae(train, test, config, epochs=1, progress=False)
    assert result.history[0].test_nelbo < before - 5


def _params(result):
    return [*result.model.state_dict().values(), *result.guide.state_dict().values()]


@pytest.mark.parametrize("binarize_mode", ["round", "sample"])
def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(mnist, tmp_path, binarize_mode):
    train, test = mnist
    config = VAEConfig(**TINY, estimator="stl", batch_size=50, binarize=binarize_mode)
    whole = train_vae(train, test, config, epochs=3, progress=False)
    ckpt = tmp_path / "ckpt.pt"
    train_vae(train, test, config, epochs=2, progress=False, checkpoint=ckpt)
    resumed = train_vae(train, test, config, epochs=3, progress=False, checkpoint=ckpt,
                        resume=True)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(_params(whole), _params(resumed)))
    assert [r[:3] for r in whole.history] == [r[:3] for r in resumed.history]


def test_resume_refuses_a_checkpoint_of_another_config(mnist, tmp_path):
    train, test = mnist
    ckpt = tmp_path / "ckpt.pt"
    train_vae(train, test, VAEConfig(**TINY, batch_size=50), epochs=1, progress=False,
              checkpoint=ckpt)  # fmt: skip
    with pytest.raises(ValueError, match="from another run"):
        train_vae(train, test, VAEConfig(**TINY, batch_size=40), epochs=2, progress=False,
                  checkpoint=ckpt, resume=True)  # fmt: skip


def test_nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint(mnist, tmp_path):
    train, test = mnist
    ckpt = tmp_path / "ckpt.pt"

    def poison(record, model, guide):  # after epoch 1 is saved, break the decoder
        if record.epoch == 1:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    with pytest.raises(FloatingPointError, match=r"at epoch 2, batch 1/4.*last good checkpoint"):
        train_vae(train, test, VAEConfig(**TINY, batch_size=50), epochs=3, progress=False,
                  checkpoint=ckpt, on_epoch=poison)  # fmt: skip
    state = load_checkpoint(ckpt)
    assert len(state["history"]) == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"latent_dim": 0}, "latent_dim must be an integer >= 1"),
        ({"estimator": "enum"}, "estimator must be one of trace, meanfield, stl"),
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"binarize": "threshold"}, "binarize must be 'round' or 'sample'"),
    ],
)
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAEConfig(**kwargs)


class _RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.sentinel}",))


def _bad_checkpoints(tmp_path):
    sentinel = tmp_path / "code-ran"
    malicious = tmp_path / "malicious.pt"
    torch.save({"format": "pyro-vi-lab/vae-checkpoint/1", "x": _RunsCode(sentinel)}, malicious)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive at all")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    return sentinel, {"malicious": malicious, "foreign": foreign, "corrupt": corrupt,
                      "empty": empty, "folder": folder}  # fmt: skip


@pytest.mark.parametrize("kind", ["malicious", "foreign", "corrupt", "empty", "folder"])
def test_resume_refuses_an_unsafe_or_foreign_checkpoint_by_name_without_running_it(
    mnist, tmp_path, kind
):
    """weights_only loading: the malicious file's os.system never runs (no sentinel file),
    every bad file gets one ValueError naming it, and the file is left as it was."""
    train, test = mnist
    sentinel, files = _bad_checkpoints(tmp_path)
    path = files[kind]
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(ValueError, match=f"checkpoint '{path}'|no checkpoint at '{path}'"):
        train_vae(train, test, VAEConfig(**TINY), epochs=2, progress=False, checkpoint=path,
                  resume=True)  # fmt: skip
    assert not sentinel.exists()
    assert (path.read_bytes() if path.is_file() else None) == before


def test_a_checkpoint_loads_with_weights_only_and_names_its_format(mnist, tmp_path):
    train, test = mnist
    ckpt = tmp_path / "ckpt.pt"
    train_vae(train, test, VAEConfig(**TINY), epochs=1, progress=False, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=True)  # raises if anything but plain values is in it
    assert state["format"] == "pyro-vi-lab/vae-checkpoint/1"
    assert load_checkpoint(ckpt)["history"][0][0] == 1


def test_temporaries_of_an_interrupted_write_are_removed_at_the_next_run(mnist, tmp_path):
    train, test = mnist
    ckpt = tmp_path / "ckpt.pt"
    stale = tmp_path / ".ckpt.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    train_vae(train, test, VAEConfig(**TINY), epochs=1, progress=False, checkpoint=ckpt)
    assert not stale.exists() and ckpt.is_file()


def test_a_nan_in_the_first_epoch_does_not_point_to_a_checkpoint_that_does_not_exist(
    mnist, tmp_path
):
    train, test = mnist
    ckpt = tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    with pytest.raises(FloatingPointError, match="no checkpoint was written yet"):
        train_vae(train, test, VAEConfig(**TINY, lr=1e30), epochs=1, progress=False,
                  checkpoint=ckpt)  # fmt: skip
    assert not ckpt.exists()


def _nan_weight(state):
    next(iter(state["model"].values())).view(-1)[0] = float("nan")


def _wrong_shape(state):
    key = next(iter(state["guide"]))
    state["guide"][key] = torch.zeros(7, 5)


def _missing_key(state):
    state["model"].pop(next(iter(state["model"])))


def _nan_in_adam(state):
    moments = next(iter(state["optimizer"]["state"].values()))
    moments["exp_avg"].view(-1)[0] = float("inf")


TAMPERED = {
    "nan weight": (_nan_weight, r"model\.[\w.]+ holds non-finite values"),
    "wrong shape": (_wrong_shape, r"guide\.[\w.]+ has shape \(7, 5\), where this config's"),
    "missing weight": (_missing_key, r"its model weights lack \['[\w.]+'\] and have extra \[\]"),
    "nan in Adam": (_nan_in_adam, r"optimizer\.state\.\d+\.exp_avg holds non-finite values"),
    "history not epochs": (lambda s: s.update(history=[(2, 1.0, 1.0, 0.1)]),
                           r"history entry 0 is \(2, 1.0, 1.0, 0.1\), not \(epoch 1"),
    "history a string": (lambda s: s.update(history="epoch 1"), "its history is a str"),
    "nan loss in history": (lambda s: s.update(history=[(1, math.nan, 1.0, 0.1)]),
                            "history entry 0 is"),
    "rng not bytes": (lambda s: s["rng"].update(torch=torch.zeros(3)),
                      "its torch random state is not a byte tensor"),
    "numpy rng short": (lambda s: s["rng"].update(numpy=["MT19937", [1, 2], 0, 0, 0.0]),
                        "its numpy random state is not MT19937's"),
    "rng missing": (lambda s: s.update(rng={}), "its random state lacks"),
    "Adam of another net": (lambda s: s["optimizer"]["param_groups"][0].update(params=[0]),
                            "its optimizer or random state does not fit this run"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_checkpoint_is_refused_by_name_before_anything_is_loaded(mnist, tmp_path, case):
    """A checkpoint with the right config but NaN weights was resumed (and, with no epochs
    left, exited 0 with null metrics); a wrong shape, a missing key or a malformed history or
    random state ended in a raw RuntimeError/TypeError/IndexError. Each is now one ValueError
    naming the file and the part; the file is left as it is."""
    train, test = mnist
    config = VAEConfig(**TINY, batch_size=100)
    ckpt = tmp_path / "ckpt.pt"
    train_vae(train, test, config, epochs=1, progress=False, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=True)
    tamper, pattern = TAMPERED[case]
    tamper(state)
    torch.save(state, ckpt)
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match=f"^checkpoint '{ckpt}': {pattern}"):
        train_vae(train, test, config, epochs=2, progress=False, checkpoint=ckpt, resume=True)
    assert ckpt.read_bytes() == before
