"""Pure-PyTorch reference of the objective heads (fastvae.heads) and of the decoder likelihoods, written from the
definitions with torch.distributions and autograd; the estimators are surrogate objectives whose autograd gradient
is the estimator's gradient (docs/heads.md).

LIKELIHOODS is the tests' table of likelihoods, one row per entry of the C++ table (cpp/likelihoods/table.h):
the table-driven tests (test_heads.py, test_likelihoods.py, test_opcheck.py) run every row, so a new likelihood is
tested once it has its row here."""
import math
from typing import Callable, NamedTuple

import torch
from torch.distributions import Bernoulli, ContinuousBernoulli, Laplace, Normal, kl_divergence


class Reference(NamedTuple):
    """A likelihood as the tests see it: the torch.distributions density of x given the decoder output `out`
    and the fixed scale (gaussian_sigma), the data it takes (fastvae._C.LIKELIHOOD_DATA), the fixed scale the
    tests use, and `edge(x, out)`: (x, out) moved onto the points where the formula changes branch."""
    dist: Callable
    data: str
    scale: float = 1.0
    edge: Callable = lambda x, out: (x, out)


def _cb_edge(x, out):
    out = out.clone()
    out[0, 0, :3] = torch.tensor([1e-4, -2e-3, 0.0])  # the normaliser's Taylor region near logit 0
    return x, out


def _tie_edge(x, out):
    out = out.clone()
    out[0, 0, :2] = x[0, :2]  # x = a: |x - a| has its kink there (derivative 0, autograd's and the kernels')
    return x, out


LIKELIHOODS = {
    "bernoulli": Reference(lambda out, scale: Bernoulli(logits=out), "binary"),
    "continuous_bernoulli": Reference(lambda out, scale: ContinuousBernoulli(logits=out), "unit_interval",
                                      edge=_cb_edge),
    "gaussian": Reference(lambda out, scale: Normal(out, scale), "real", 0.7),
    "laplace": Reference(lambda out, scale: Laplace(out, scale), "real", 0.7, edge=_tie_edge),
}

# (likelihood, gaussian_sigma, gaussian_scale): every likelihood with its test scale, and the predicted Gaussian
# scale (decoder_out [.., 2D]: mean, then log-variance).
FAMILIES = [(name, r.scale, "fixed") for name, r in LIKELIHOODS.items()] + [("gaussian", 1.0, "predicted")]
FAMILY_IDS = [f"{lik}-{scale}" if lik == "gaussian" else lik for lik, _, scale in FAMILIES]


def data(likelihood, shape, generator, dtype=torch.float64):
    """Random data the likelihood takes: 0/1 (binary), uniform on [0, 1] (unit_interval) or standard normal."""
    kind = LIKELIHOODS[likelihood].data
    if kind == "binary":
        return (torch.rand(shape, generator=generator) < 0.4).to(dtype)
    if kind == "unit_interval":
        return torch.rand(shape, generator=generator, dtype=dtype)
    return torch.randn(shape, generator=generator, dtype=dtype)


def dist(out, likelihood, gaussian_sigma=1.0, gaussian_scale="fixed"):
    """p(x | out) as a torch.distributions object over the pixels."""
    if gaussian_scale == "predicted":
        d = out.shape[-1] // 2
        return Normal(out[..., :d], torch.exp(0.5 * out[..., d:]))
    return LIKELIHOODS[likelihood].dist(out, gaussian_sigma)


def log_lik(x, out, likelihood, gaussian_sigma=1.0, gaussian_scale="fixed"):
    """log p(x | out) summed over pixels: [L, B]."""
    return dist(out, likelihood, gaussian_sigma, gaussian_scale).log_prob(x.expand(out.shape[0], *x.shape)).sum(-1)


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


# -- the objectives of Rainforth et al. 2018 ("Tighter variational bounds are not necessarily better", ICML, sec. 5)
# beside the IWAE bound, from their equations, on log weights log w [L, B] with the samples group-major
# (l = m*K + k: sample k of group m). The DReG surrogates are Tucker et al. 2019's: their gradient with respect
# to the encoder's parameters is the DReG estimator when log w is computed with q's parameters held fixed.

def log_weights(x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale, stop=False):
    """log w = log p(x | out) + log p(z) - log q(z | x) per sample, [L, B], by torch.distributions; with ``stop``
    q's parameters are held fixed inside log q (its value is the same)."""
    return log_lik(x, out, likelihood, gaussian_sigma, gaussian_scale) + _prior_minus_posterior(z, mu, sigma, stop)


def iwae(lw):
    """IWAE_K (Burda et al. 2016): logsumexp_k log w_k - log K, [B]."""
    return torch.logsumexp(lw, 0) - math.log(lw.shape[0])


def miwae(lw, groups):
    """MIWAE(M, K) = (1/M) sum_m IWAE_K of group m (Rainforth et al. 2018), [B]."""
    return torch.stack([iwae(g) for g in lw.chunk(groups, 0)]).mean(0)


def group_weights(lw, groups):
    """softmax_k of log w within each group, [M*K, B], detached."""
    return torch.cat([torch.softmax(g, 0) for g in lw.chunk(groups, 0)]).detach()


def ciwae(lw, beta):
    """CIWAE(beta) = beta ELBO_K + (1 - beta) IWAE_K on the same K samples, ELBO_K = (1/K) sum_k log w_k, [B]."""
    return beta * lw.mean(0) + (1 - beta) * iwae(lw)


def dreg_iwae(lw_stop):
    """Tucker et al. 2019, eq. 6: sum_k stop(w~_k^2) log w_k (log w with q's parameters held fixed), [B]."""
    w = torch.softmax(lw_stop.detach(), 0)
    return (w ** 2 * lw_stop).sum(0)


def dreg_miwae(lw_stop, groups):
    """DReG surrogate of MIWAE: the mean over the groups of each group's dreg_iwae, [B]."""
    return torch.stack([dreg_iwae(g) for g in lw_stop.chunk(groups, 0)]).mean(0)


def dreg_ciwae(lw_stop, beta):
    """DReG surrogate of CIWAE: beta times the ELBO's STL surrogate (1/K) sum_k log w_k plus (1 - beta) times
    dreg_iwae, [B]."""
    return beta * lw_stop.mean(0) + (1 - beta) * dreg_iwae(lw_stop)
