"""Pure-PyTorch reference of the objective heads (fastvae.heads), written from the definitions with
torch.distributions and autograd; the estimators are surrogate objectives whose autograd gradient is the
estimator's gradient (docs/heads.md)."""
import math

import torch
from torch.distributions import Bernoulli, ContinuousBernoulli, Normal, kl_divergence


def log_lik(x, out, likelihood, gaussian_sigma=1.0, gaussian_scale="fixed"):
    """log p(x | out) summed over pixels: [L, B]."""
    if likelihood == "bernoulli":
        dist = Bernoulli(logits=out)
    elif likelihood == "continuous_bernoulli":
        dist = ContinuousBernoulli(logits=out)
    elif gaussian_scale == "predicted":
        d = x.shape[-1]
        dist = Normal(out[..., :d], torch.exp(0.5 * out[..., d:]))
    else:
        dist = Normal(out, gaussian_sigma)
    return dist.log_prob(x.expand(out.shape[0], *x.shape)).sum(-1)


def _prior_minus_posterior(z, mu, sigma, stop):
    """log p(z) - log q(z | x) per sample [L, B]; with ``stop`` q's parameters are held fixed."""
    q = Normal(mu.detach(), sigma.detach()) if stop else Normal(mu, sigma)
    return (Normal(torch.zeros_like(z), torch.ones_like(z)).log_prob(z) - q.log_prob(z)).sum(-1)


def elbo_terms(x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale, estimator):
    """(elbo, rec, kl), each [B]; autograd gives the estimator's gradients."""
    rec = log_lik(x, out, likelihood, gaussian_sigma, gaussian_scale).mean(0)
    if estimator == "analytic":
        kl = kl_divergence(Normal(mu, sigma), Normal(torch.zeros_like(mu), torch.ones_like(sigma))).sum(-1)
    else:
        kl = -_prior_minus_posterior(z, mu, sigma, stop=estimator == "stl").mean(0)
    return rec - kl, rec, kl


def iwae_bound(x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale, estimator):
    """(bound [B], weights [K, B], surrogate [B]): the bound's value, softmax_k(log w), and a surrogate whose
    autograd gradient is the estimator's (reparam: the bound itself; stl: the bound with q's parameters held
    fixed; dreg: sum_k w~ log p(x | out_k) + w~^2 (log p(z_k) - log q(z_k)) with q's parameters and w~ fixed,
    Tucker et al. 2019 eq. 6 without the decoder path of z, which the caller's hook supplies)."""
    ll = log_lik(x, out, likelihood, gaussian_sigma, gaussian_scale)
    k = out.shape[0]
    lw = ll + _prior_minus_posterior(z, mu, sigma, stop=False)
    bound = torch.logsumexp(lw, 0) - math.log(k)
    weights = torch.softmax(lw, 0).detach()
    if estimator == "reparam":
        surrogate = bound
    elif estimator == "stl":
        surrogate = torch.logsumexp(ll + _prior_minus_posterior(z, mu, sigma, stop=True), 0) - math.log(k)
    else:
        surrogate = (weights * ll + weights ** 2 * _prior_minus_posterior(z, mu, sigma, stop=True)).sum(0)
    return bound, weights, surrogate
