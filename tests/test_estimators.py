"""ELBO gradient estimators of fastvae.elbo ("analytic", "mc", "stl") against references written with
torch.distributions and autograd, for the four homework presets in float64.

STL reference (Roeder, Wu & Duvenaud 2017, "Sticking the Landing"): the same Monte Carlo ELBO, with the
variational parameters detached inside log q(z | x) so that only the path derivative through z remains."""
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal, kl_divergence

import fastvae

PRESETS = ["stats305c", "ese546", "cvae_hw7", "dd2434"]
ESTIMATORS = ["analytic", "mc", "stl"]


def reference_elbo(model, params, x, y, eps, estimator):
    """(elbo, rec, kl) per image from the definitions, differentiable in params (engine order)."""
    act = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda t: t,
           "leaky_relu": lambda t: F.leaky_relu(t, model.negative_slope)}
    n_enc = len(model.encoder_hidden) + 1
    n_dec = len(model.decoder_hidden) + 1
    n_cls = model.cond_dim

    def with_label(h, labels):
        return h if labels is None else torch.cat([h, F.one_hot(labels, n_cls).to(h)], 1)

    h = with_label(x, y)
    for k in range(n_enc - 1):
        h = act[model.activation](F.linear(h, params[2 * k], params[2 * k + 1]))
    head = F.linear(h, params[2 * n_enc - 2], params[2 * n_enc - 1])
    zdim = model.latent_dim
    mu = act[model.mean_activation](head[:, :zdim])
    s = act[model.scale_activation](head[:, zdim:])
    sigma = {"logvar": lambda: torch.exp(0.5 * s), "logstd": lambda: torch.exp(s), "std": lambda: s}[model.posterior]()
    n_samples, batch = eps.shape[0], x.shape[0]
    z = mu + sigma * eps  # [L, B, Z]
    h = with_label(z.reshape(n_samples * batch, zdim), None if y is None else y.repeat(n_samples))
    for k in range(n_dec):
        h = F.linear(h, params[2 * (n_enc + k)], params[2 * (n_enc + k) + 1])
        if k < n_dec - 1:
            h = act[model.activation](h)
    rec = Bernoulli(logits=h).log_prob(x.repeat(n_samples, 1)).sum(1).reshape(n_samples, batch).mean(0)
    prior = Normal(torch.zeros_like(mu), torch.ones_like(sigma))
    if estimator == "analytic":
        kl = kl_divergence(Normal(mu, sigma), prior).sum(1)
    else:
        q = Normal(mu, sigma) if estimator == "mc" else Normal(mu.detach(), sigma.detach())
        kl = (q.log_prob(z) - prior.log_prob(z)).sum(2).mean(0)
    return rec - kl, rec, kl


def setup(name, batch=5, n_samples=3, seed=0):
    torch.manual_seed(seed)
    model = fastvae.VAE.from_preset(name, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed + 1)
    x = (torch.rand(batch, model.data_dim, generator=gen) < 0.3).double()
    y = torch.randint(0, model.cond_dim, (batch,), generator=gen) if model.cond_dim else None
    eps = torch.randn(n_samples, batch, model.latent_dim, dtype=torch.float64, generator=gen)
    return model, x, y, eps


def weighted_loss(out):
    # weights on all three outputs so that every path of the backward is exercised
    return -(out[0].sum() + 0.3 * out[1][0] + 0.7 * out[2][-1])


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("name", PRESETS)
def test_estimator_values_and_gradients(name, estimator):
    model, x, y, eps = setup(name)
    out = fastvae.elbo(model, x, eps=eps, y=y, estimator=estimator)
    grads = torch.autograd.grad(weighted_loss(out), model.flat_parameters())
    params = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]
    ref = reference_elbo(model, params, x, y, eps, estimator)
    grads_ref = torch.autograd.grad(weighted_loss(ref), params)
    for a, b in zip(out, ref):
        assert (a - b).abs().max().item() <= 1e-9
    assert max((a - b).abs().max().item() for a, b in zip(grads, grads_ref)) <= 1e-9


@pytest.mark.parametrize("name", PRESETS)
def test_stl_same_value_as_mc_different_encoder_gradient(name):
    model, x, y, eps = setup(name, seed=3)
    mc = fastvae.elbo(model, x, eps=eps, y=y, estimator="mc")
    stl = fastvae.elbo(model, x, eps=eps, y=y, estimator="stl")
    for a, b in zip(mc, stl):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    params = model.flat_parameters()
    g_mc = torch.autograd.grad(-mc.elbo.sum(), params)
    g_stl = torch.autograd.grad(-stl.elbo.sum(), params)
    n_enc = 2 * (len(model.encoder_hidden) + 1)
    # the dropped score term only involves q's parameters: decoder gradients agree, the encoder's differ
    for a, b in zip(g_mc[n_enc:], g_stl[n_enc:]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert max((a - b).abs().max().item() for a, b in zip(g_mc[:n_enc], g_stl[:n_enc])) > 1e-6


def test_bad_estimator_name():
    model, x, y, eps = setup("ese546")
    with pytest.raises(ValueError, match="estimator must be one of"):
        fastvae.elbo(model, x, eps=eps, estimator="reinforce")
