"""Every family the engine accepts, against the one plain PyTorch reference VAE (tests/reference/vae.py; issue 9,
"reference agreement"): each likelihood (and Gaussian scale mode) x latent family x each objective and
encoder-gradient estimator the latent trains with, float64 values and every parameter gradient within 1e-9; the
other combinations raise. The lists come from the C++ name tables, so a family added to the engine without a
reference fails the first test.

The reference runs the model with torch.nn on copies of ``model.flat_parameters()`` (gradients in the same
order, so they compare entry by entry) and takes every density from torch.distributions."""
import pytest
import torch

import fastvae
from fastvae import _C
from reference import heads, vae as reference_vae
from reference.vae import MlpReference

F64 = torch.float64
FAMILIES = [(lik, scale) for lik in _C.LIKELIHOODS for scale in (_C.GAUSSIAN_SCALES if lik == "gaussian" else ("fixed",))]
OBJECTIVES = [("elbo", e) for e in _C.ESTIMATORS] + [("iwae", e) for e in _C.IWAE_ESTIMATORS]


# Categorical latents (Jang et al. 2017) train the ELBO with its analytic KL, relaxed or straight-through.
CATEGORICAL = [("elbo", "analytic", False), ("elbo", "analytic", True)]
TAU = 0.7


def test_every_engine_family_has_a_reference():
    r = reference_vae
    assert set(r.LIKELIHOODS) == set(_C.LIKELIHOODS)
    assert set(r.GAUSSIAN_SCALES) == set(_C.GAUSSIAN_SCALES)
    assert set(r.LATENTS) == set(_C.LATENTS) == {"gaussian", "categorical"}
    assert set(r.ELBO_ESTIMATORS) == set(_C.ESTIMATORS) and set(r.IWAE_ESTIMATORS) == set(_C.IWAE_ESTIMATORS)
    assert set(r.ACTIVATIONS) == set(_C.ACTIVATIONS) and set(r.POSTERIORS) == set(_C.POSTERIORS)


def model_and_data(likelihood, scale, seed=0, B=5, K=3, latent="gaussian"):
    torch.manual_seed(seed)
    cat = dict(latent="categorical", categories=4) if latent == "categorical" else {}
    model = fastvae.VAE(data_dim=9, latent_dim=3, encoder_hidden=(6, 5), decoder_hidden=(5,), dtype=F64,
                        activation="tanh", likelihood=likelihood, gaussian_sigma=0.4, gaussian_scale=scale, **cat)
    if scale == "learned":
        with torch.no_grad():  # a different scale per pixel, so a pixel mix-up cannot pass
            model.log_sigma.add_(torch.linspace(-0.5, 0.5, model.data_dim, dtype=F64))
    g = torch.Generator().manual_seed(seed + 1)
    x = heads.data(likelihood, (B, model.data_dim), g, F64)  # data each likelihood takes (the reference table)
    if latent == "categorical":  # uniform noise [K, B, N*C] strictly inside (0, 1) for the Gumbel draws
        eps = torch.rand(K, B, model.code_dim, generator=g, dtype=F64).clamp(1e-6, 1 - 1e-6)
    else:
        eps = torch.randn(K, B, model.latent_dim, generator=g, dtype=F64)
    return model, x, eps


def reference(model, x, eps, objective, estimator, weights, hard=False):
    """(per-image value, gradient of sum_i weights_i value_i in fastvae's parameter order), by definition: the
    ELBO with an analytic, Monte Carlo or STL KL (Roeder et al. 2017), relaxed or straight-through for a
    categorical latent; the IWAE bound (Burda et al. 2016) with its reparameterization, STL or DReG (Tucker et al.
    2018) encoder gradient."""
    ref = MlpReference(model)
    if objective == "elbo":
        value = ref.elbo(x, eps, None, estimator, temperature=TAU, hard=hard)
        return value.detach(), ref.grads_in_fastvae_order((weights * value).sum())
    value, surrogate = ref.iwae(x, eps, None, estimator)
    return value, ref.grads_in_fastvae_order((weights * surrogate).sum())


@pytest.mark.parametrize("objective, estimator", OBJECTIVES, ids=[f"{o}-{e}" for o, e in OBJECTIVES])
@pytest.mark.parametrize("likelihood, scale", FAMILIES, ids=[f"{a}-{b}" for a, b in FAMILIES])
def test_value_and_every_gradient_match_the_reference(likelihood, scale, objective, estimator):
    model, x, eps = model_and_data(likelihood, scale)
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
        assert b is not None and a.shape == b.shape and (a - b).abs().max().item() <= 1e-9


@pytest.mark.parametrize("objective, estimator, hard", CATEGORICAL, ids=["relaxed", "straight-through"])
@pytest.mark.parametrize("likelihood, scale", FAMILIES, ids=[f"{a}-{b}" for a, b in FAMILIES])
def test_categorical_value_and_every_gradient_match_the_reference(likelihood, scale, objective, estimator, hard):
    model, x, u = model_and_data(likelihood, scale, latent="categorical")
    weights = torch.linspace(0.5, 1.5, x.shape[0], dtype=F64)
    ours = fastvae.elbo(model, x, eps=u, estimator=estimator, temperature=TAU, hard=hard).elbo
    grads = torch.autograd.grad((weights * ours).sum(), model.flat_parameters())
    value, ref_grads = reference(model, x, u, objective, estimator, weights, hard)
    assert (ours.detach() - value).abs().max().item() <= 1e-9
    assert len(grads) == len(ref_grads)
    for a, b in zip(grads, ref_grads):
        assert b is not None and a.shape == b.shape and (a - b).abs().max().item() <= 1e-9


REJECTED = [(o, e) for o, e in OBJECTIVES if (o, e) != ("elbo", "analytic")]


@pytest.mark.parametrize("objective, estimator", REJECTED, ids=[f"{o}-{e}" for o, e in REJECTED])
def test_categorical_latent_refuses_the_other_objectives(objective, estimator):
    model, x, u = model_and_data("bernoulli", "fixed", latent="categorical")
    with pytest.raises((ValueError, RuntimeError), match="categorical"):
        if objective == "elbo":
            fastvae.elbo(model, x, eps=u, estimator=estimator, temperature=TAU)
        else:
            fastvae.iwae(model, x, estimator=estimator)
