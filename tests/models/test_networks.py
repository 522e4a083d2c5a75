"""VAEs around users' own networks (fastvae.VAE.from_networks): the Python training loop against a plain-PyTorch
loop with the same draws (torch.distributions, torch.optim.Adam), checkpoints that resume exactly, divergence,
the objectives through fastvae.elbo / iwae / log_likelihood, and bad input."""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, ContinuousBernoulli, Normal

import fastvae
from fastvae import TrainingDivergedError
from fastvae import NetworkVAE

F64 = torch.float64
D, Z = 12, 2


def _nets(seed=0, dtype=F64, out=D):
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 2 * Z)).to(dtype)
    dec = nn.Sequential(nn.Linear(Z, 8), nn.Tanh(), nn.Linear(8, out)).to(dtype)
    return enc, dec


def _images(n=50, seed=1):
    return (torch.rand(n, D, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)


def _reference_fit(enc, dec, images, *, seed, epochs, batch_size, n_samples, lr, likelihood, pixels, estimator):
    """The loop written out in plain PyTorch, drawing from one CPU generator in the documented order."""
    gen = torch.Generator().manual_seed(seed)
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    n = images.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, batch_size):
            p = images[perm[s:s + batch_size]].float()  # pixels in float32 (fastvae.pixels), then the model's dtype
            x = ((torch.rand(p.shape, generator=gen) < p / 255) if pixels == "dynamic" else p / 255).to(F64)
            eps = torch.randn(n_samples, x.shape[0], Z, generator=gen).to(F64)
            mu, s_ = enc(x).chunk(2, -1)
            sigma = torch.exp(s_ / 2)
            z = mu + sigma * eps
            logits = dec(z.reshape(-1, Z)).reshape(n_samples, x.shape[0], D)
            px = Bernoulli(logits=logits) if likelihood == "bernoulli" else ContinuousBernoulli(logits=logits)
            rec = px.log_prob(x).sum(-1).mean(0)
            q = Normal(mu, sigma) if estimator == "mc" else Normal(mu.detach(), sigma.detach())
            kl = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).mean(0)
            loss = -(rec - kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return params


@pytest.mark.parametrize("likelihood, pixels, estimator", [("bernoulli", "dynamic", "mc"),
                                                            ("continuous_bernoulli", "intensity", "stl")])
def test_fit_matches_plain_pytorch_loop(likelihood, pixels, estimator):
    images = _images()
    kw = dict(epochs=2, batch_size=20, n_samples=3, lr=3e-3)
    model = fastvae.VAE.from_networks(*_nets(), Z, likelihood=likelihood)
    hist = fastvae.training.fit(model, images, seed=5, progress=False, pixels=pixels, estimator=estimator, **kw)
    want = _reference_fit(*_nets(), images, seed=5, likelihood=likelihood, pixels=pixels, estimator=estimator, **kw)
    for a, b in zip(model.parameters(), want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    assert len(hist.update_rec) == 6 and len(hist.train_elbo) == 2 and np.all(np.isnan(hist.test_elbo))


@pytest.mark.parametrize("objective", [dict(), dict(objective="iwae", k=3, iwae_estimator="dreg")])
def test_checkpoint_resumes_exactly(tmp_path, objective):
    images, test = _images(), _images(20, seed=2)
    kw = dict(batch_size=16, pixels="dynamic", progress=False, test_images=test, **objective)
    a = fastvae.VAE.from_networks(*_nets(), Z)
    a.fit(images, epochs=2, seed=9, **kw)
    b = fastvae.VAE.from_networks(*_nets(), Z)
    b.fit(images, epochs=1, seed=9, checkpoint=tmp_path / "m.pt", **kw)
    c = NetworkVAE.load(tmp_path / "m.pt", *_nets(seed=123))
    c.fit(images, epochs=1, **kw)
    for p, q in zip(a.parameters(), c.parameters()):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(a.history_.update_rec, c.history_.update_rec)
    np.testing.assert_array_equal(a.history_.test_elbo, c.history_.test_elbo)


def test_divergence_keeps_the_last_good_parameters():
    model = fastvae.VAE.from_networks(*_nets(), Z)
    seen = []

    def poison(event, info):  # after the 2nd update, make the decoder's output infinite
        seen.append([p.detach().clone() for p in model.parameters()])
        if info["update"] == 2:
            with torch.no_grad():
                model.decoder[2].bias.fill_(float("inf"))
    with pytest.raises(TrainingDivergedError, match="non-finite loss at update 3"):
        model.fit(_images(), epochs=1, batch_size=10, seed=1, progress=False, callback=poison, callback_every=1)
    assert len(model.history_.update_rec) == 2


def test_objectives_through_the_public_functions():
    model = fastvae.VAE.from_networks(*_nets(), Z)
    x = (_images(8).to(F64) > 127).to(F64)
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(4, 8, Z, generator=g, dtype=F64)
    a = fastvae.elbo(model, x, n_samples=4, eps=eps, estimator="mc")
    b = model.elbo(x, 4, eps=eps, estimator="mc")
    torch.testing.assert_close(a.elbo, b.elbo)
    bound = fastvae.iwae(model, x, k=4, eps=eps)
    assert bound.shape == (8,) and torch.all(bound >= a.elbo - 1e-9)  # same draws: the bound is above the mean
    ll = fastvae.log_likelihood(model, x, k=200, generator=torch.Generator().manual_seed(1))
    assert ll.shape == (8,) and torch.all(ll <= 0) and ll.mean() > a.elbo.mean()
    assert model.sample(5).shape == (5, D) and model.reconstruct(x).shape == (8, D)


def test_bad_input():
    enc, dec = _nets()
    model = fastvae.VAE.from_networks(enc, dec, Z)
    rows = [
        (lambda: fastvae.VAE.from_networks(lambda x: x, dec, Z), TypeError, "encoder must be a torch.nn.Module"),
        (lambda: fastvae.VAE.from_networks(enc, dec, 0), ValueError, "latent_dim must be an integer >= 1"),
        (lambda: fastvae.VAE.from_networks(enc, dec, 2.0), TypeError, "latent_dim must be an integer"),
        (lambda: fastvae.VAE.from_networks(enc, dec, Z, gaussian_scale="predicted"), ValueError,
         "needs likelihood 'gaussian'"),
        (lambda: fastvae.VAE.from_networks(enc, dec, Z, posterior="std"), ValueError, "posterior must be one of"),
        (lambda: model.fit(_images(), epochs=1, free_bits=1.0), ValueError, "do not apply to a model with custom"),
        (lambda: model.fit(_images(), epochs=1, pixels="intensity"), ValueError, "binary likelihood such as bernoulli cannot take"),
        (lambda: fastvae.training.fit(model, _images(), train_labels=torch.zeros(50, dtype=torch.long)), ValueError,
         "unconditional"),
        (lambda: model.fit(_images(), epochs=1.5), TypeError, "epochs must be an integer"),
        (lambda: model.elbo(torch.zeros(3, D, dtype=F64, device="meta")), ValueError, "the model.s parameters on cpu"),
        (lambda: model.elbo(torch.zeros(3, D, dtype=F64), eps=torch.zeros(2, 4, Z, dtype=F64)), ValueError,
         "eps must have shape"),
        (lambda: model.elbo(torch.zeros(3, D, dtype=F64), eps=torch.zeros(2, 3, Z)), TypeError, "eps must have dtype"),
        (lambda: model.elbo(torch.zeros(3, D)), TypeError, "model's dtype torch.float64"),
        (lambda: fastvae.VAE.from_networks(enc, nn.Linear(Z, 5).double(), Z).elbo(torch.zeros(3, D, dtype=F64)),
         ValueError, "decoder_out must have shape"),
        (lambda: fastvae.VAE.from_networks(nn.Linear(D, 3).double(), dec, Z).elbo(torch.zeros(3, D, dtype=F64)),
         ValueError, "the encoder must return"),
    ]
    for call, exc, message in rows:
        with pytest.raises(exc, match=message):
            call()


def test_load_refuses_other_files(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(fastvae.CheckpointError, match="not a fastvae checkpoint"):
        NetworkVAE.load(path, *_nets())
    model = fastvae.VAE.from_networks(*_nets(), Z)
    model.save(tmp_path / "m.pt")
    with pytest.raises(fastvae.CheckpointError, match="holds an invalid checkpoint"):
        NetworkVAE.load(tmp_path / "m.pt", *_nets(out=D + 1))
