"""fit of VAEs around users' own networks (fastvae.VAE.from_networks): the Python training loop against a
plain-PyTorch loop with the same draws (torch.distributions, torch.optim.Adam), and divergence."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, ContinuousBernoulli, Normal

import fastvae
from fastvae import TrainingDivergedError

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
