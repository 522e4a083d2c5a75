"""Every family the engine accepts, against one torch.distributions reference (issue 9, "reference agreement"):
each likelihood x each objective and encoder-gradient estimator, float64 values and every parameter gradient
within 1e-9. The lists come from the C++ name tables, so a family added to the engine without a reference
here fails the first test."""
import math

import pytest
import torch
from torch.distributions import Bernoulli, ContinuousBernoulli, Normal, kl_divergence

import fastvae
from fastvae import _C
from reference_vaes import Arch, RefVAE

F64 = torch.float64
SIGMA = 0.4  # the fixed Gaussian scale of the test models


def bernoulli(model, a):
    return Bernoulli(logits=a)


def continuous_bernoulli(model, a):
    return ContinuousBernoulli(logits=a)


def gaussian(model, a):
    return Normal(a, model.gaussian_sigma)


REFERENCE_LIKELIHOODS = {"bernoulli": bernoulli, "continuous_bernoulli": continuous_bernoulli, "gaussian": gaussian}
OBJECTIVES = [("elbo", e) for e in _C.ESTIMATORS] + [("iwae", e) for e in _C.IWAE_ESTIMATORS]


def test_every_engine_likelihood_has_a_reference():
    assert set(REFERENCE_LIKELIHOODS) == set(_C.LIKELIHOODS)


def model_and_data(likelihood, seed=0, B=5, K=3):
    torch.manual_seed(seed)
    model = fastvae.VAE(data_dim=9, latent_dim=3, encoder_hidden=(6, 5), decoder_hidden=(5,), dtype=F64,
                        activation="tanh", posterior="logvar", likelihood=likelihood, gaussian_sigma=SIGMA)
    g = torch.Generator().manual_seed(seed + 1)
    u = torch.rand(B, model.data_dim, generator=g, dtype=F64)
    x = {"bernoulli": (u > 0.5).to(F64), "continuous_bernoulli": u, "gaussian": 4 * u - 2}[likelihood]
    eps = torch.randn(K, B, model.latent_dim, generator=g, dtype=F64)
    return model, x, eps


def terms(ref, lik, x, eps, detach_q=False):
    """log p(x | z_l), log p(z_l) - log q(z_l | x) per sample, [K, B], with z_l = mu + sigma eps_l (q's
    parameters held fixed inside log q if detach_q), and q, p(z)."""
    K, B, Z = eps.shape
    qz = ref.q(x)
    z = qz.loc + qz.scale * eps
    log_px = lik(ref.logits(z.reshape(K * B, Z))).log_prob(x.repeat(K, 1)).sum(-1).reshape(K, B)
    prior = Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale))
    q_eval = Normal(qz.loc.detach(), qz.scale.detach()) if detach_q else qz
    return log_px, prior.log_prob(z).sum(-1) - q_eval.log_prob(z).sum(-1), qz, prior


def log_weights(ref, lik, x, eps, detach_q=False):
    log_px, log_ratio, _, _ = terms(ref, lik, x, eps, detach_q)
    return log_px + log_ratio


def reference(model, x, eps, objective, estimator, weights):
    """(per-image value, gradient of sum_i weights_i value_i in fastvae's parameter order), by definition:
    the ELBO with an analytic, Monte Carlo or STL KL (Roeder et al. 2017); the IWAE bound (Burda et al. 2016)
    with its reparameterization, STL or DReG (Tucker et al. 2018) encoder gradient."""
    ref = RefVAE(model, Arch.of(model))
    lik = lambda a: REFERENCE_LIKELIHOODS[model.likelihood](model, a)  # noqa: E731
    if objective == "elbo":
        log_px, log_ratio, qz, prior = terms(ref, lik, x, eps, detach_q=estimator == "stl")
        kl = kl_divergence(qz, prior).sum(-1) if estimator == "analytic" else -log_ratio.mean(0)
        value = log_px.mean(0) - kl
        return value.detach(), ref.grads_in_fastvae_order((weights * value).sum())
    bound = lambda lw: torch.logsumexp(lw, 0) - math.log(lw.shape[0])  # noqa: E731
    lw = log_weights(ref, lik, x, eps)
    value = bound(lw)
    if estimator == "reparam":
        return value.detach(), ref.grads_in_fastvae_order((weights * value).sum())
    lw_fixed = log_weights(ref, lik, x, eps, detach_q=True)
    if estimator == "stl":
        return value.detach(), ref.grads_in_fastvae_order((weights * bound(lw_fixed)).sum())
    wn = torch.softmax(lw_fixed, 0).detach()  # DReG: encoder from sum_l wn_l^2 log w_l, decoder from the bound
    enc = ref.grads_in_fastvae_order((weights * (wn ** 2 * lw_fixed).sum(0)).sum())
    dec = ref.grads_in_fastvae_order((weights * value).sum())
    n_enc = 2 * (len(ref.enc) + 1)
    return value.detach(), enc[:n_enc] + dec[n_enc:]


@pytest.mark.parametrize("objective, estimator", OBJECTIVES, ids=[f"{o}-{e}" for o, e in OBJECTIVES])
@pytest.mark.parametrize("likelihood", _C.LIKELIHOODS)
def test_value_and_every_gradient_match_the_reference(likelihood, objective, estimator):
    model, x, eps = model_and_data(likelihood)
    weights = torch.linspace(0.5, 1.5, x.shape[0], dtype=F64)
    if objective == "elbo":
        ours = fastvae.elbo(model, x, eps=eps, estimator=estimator).elbo
    else:
        ours = fastvae.iwae(model, x, eps=eps, estimator=estimator)
    grads = torch.autograd.grad((weights * ours).sum(), model.flat_parameters())
    value, ref_grads = reference(model, x, eps, objective, estimator, weights)
    assert (ours.detach() - value).abs().max().item() <= 1e-9
    assert len(grads) == len(ref_grads)
    for a, b in zip(grads, ref_grads):
        assert a.shape == b.shape and (a - b).abs().max().item() <= 1e-9
