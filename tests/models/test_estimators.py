"""Properties of the ELBO gradient estimators ("analytic", "mc", "stl") beyond the per-preset reference
comparison in test_vae.py (which checks all three against torch.distributions references, float64).

Sticking the landing (Roeder, Wu & Duvenaud 2017) evaluates log q(z | x) with the variational parameters
held fixed, dropping the score-function term: the value equals the Monte Carlo ELBO's, the gradient does
not, and only the encoder's gradient can change."""
import pytest
import torch

import fastvae
from test_vae import PRESETS, make_batch


@pytest.mark.parametrize("name", PRESETS)
def test_stl_same_value_as_mc_different_encoder_gradient(name):
    model = fastvae.VAE.from_preset(name, dtype=torch.float64)
    x, y, eps = make_batch(model, B=5, L=3, seed=3)
    mc = fastvae.elbo(model, x, eps=eps, y=y, estimator="mc")
    stl = fastvae.elbo(model, x, eps=eps, y=y, estimator="stl")
    for a, b in zip(mc, stl):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    params = model.flat_parameters()
    g_mc = torch.autograd.grad(-mc.elbo.sum(), params)
    g_stl = torch.autograd.grad(-stl.elbo.sum(), params)
    n_enc = 2 * (len(model.encoder_hidden) + 1)
    for a, b in zip(g_mc[n_enc:], g_stl[n_enc:]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert max((a - b).abs().max().item() for a, b in zip(g_mc[:n_enc], g_stl[:n_enc])) > 1e-6


def test_mc_kl_is_unbiased_for_the_analytic_kl():
    model = fastvae.VAE.from_preset("ese546", dtype=torch.float64)
    x, _, _ = make_batch(model, B=4, L=1)
    g = torch.Generator().manual_seed(5)
    analytic = fastvae.elbo(model, x, n_samples=1, generator=g).kl
    mc = fastvae.elbo(model, x, n_samples=20_000, generator=g, estimator="mc").kl
    torch.testing.assert_close(mc, analytic, atol=0.05, rtol=0)  # ~5 standard errors
