"""VAEs around users' own networks (fastvae.VAE.from_networks): the objectives through fastvae.elbo / iwae /
log_likelihood against the reference VAE on the same networks (tests/reference/vae.py), and bad input.
Training: tests/training/test_networks_fit.py; checkpoints: tests/checkpoint/test_network_checkpoints.py."""
import pytest
import torch
from torch import nn

import fastvae
from reference.vae import NetworkReference

F64 = torch.float64
D, Z = 12, 2


def _nets(seed=0, dtype=F64, out=D):
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 2 * Z)).to(dtype)
    dec = nn.Sequential(nn.Linear(Z, 8), nn.Tanh(), nn.Linear(8, out)).to(dtype)
    return enc, dec


def _images(n=50, seed=1):
    return (torch.rand(n, D, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)


def test_objectives_through_the_public_functions():
    model = fastvae.VAE.from_networks(*_nets(), Z)
    x = (_images(8).to(F64) > 127).to(F64)
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(4, 8, Z, generator=g, dtype=F64)
    ref = NetworkReference(*_nets(), Z)  # the same networks, in the reference's hands
    a = fastvae.elbo(model, x, n_samples=4, eps=eps, estimator="mc")
    rec, kl = ref.elbo_terms(x, eps, estimator="mc")
    torch.testing.assert_close(a.rec, rec.detach(), atol=1e-10, rtol=0)
    torch.testing.assert_close(a.kl, kl.detach(), atol=1e-10, rtol=0)
    bound = fastvae.iwae(model, x, k=4, eps=eps)
    torch.testing.assert_close(bound.detach(), ref.iwae(x, eps)[0], atol=1e-10, rtol=0)
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
