"""Every family the engine accepts, against one plain PyTorch reference (issue 9, "reference agreement"): each
likelihood (and Gaussian scale mode) x latent family x each objective and encoder-gradient estimator the latent
trains with, float64 values and every parameter gradient within 1e-9; the other combinations raise. The lists come from the C++ name tables, so a family added to the engine
without a reference here fails the first tests.

The reference runs the model with torch.nn.functional on leaf clones of ``model.flat_parameters()`` (same
order, so gradients compare entry by entry) and takes every density from torch.distributions."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Categorical, ContinuousBernoulli, Normal, kl_divergence

import fastvae
from fastvae import _C

F64 = torch.float64
ACT = {"identity": lambda t, s: t, "relu": lambda t, s: F.relu(t), "tanh": lambda t, s: torch.tanh(t),
       "sigmoid": lambda t, s: torch.sigmoid(t), "leaky_relu": lambda t, s: F.leaky_relu(t, s)}


def bernoulli(model, out, ps):
    return Bernoulli(logits=out)


def continuous_bernoulli(model, out, ps):
    return ContinuousBernoulli(logits=out)


def gaussian(model, out, ps):
    D = model.data_dim
    scale = {"fixed": lambda: torch.full_like(out, model.gaussian_sigma),  # Kingma & Welling 2014, C.2
             "learned": lambda: torch.exp(ps[-1]).expand_as(out),
             "predicted": lambda: torch.exp(out[:, D:] / 2)}[model.gaussian_scale]()
    return Normal(out[:, :D], scale)


REFERENCE_LIKELIHOODS = {"bernoulli": bernoulli, "continuous_bernoulli": continuous_bernoulli, "gaussian": gaussian}
GAUSSIAN_SCALES = ("fixed", "learned", "predicted")
FAMILIES = [(lik, scale) for lik in _C.LIKELIHOODS for scale in (_C.GAUSSIAN_SCALES if lik == "gaussian" else ("fixed",))]
OBJECTIVES = [("elbo", e) for e in _C.ESTIMATORS] + [("iwae", e) for e in _C.IWAE_ESTIMATORS]


# Categorical latents (Jang et al. 2017) train the ELBO with its analytic KL, relaxed or straight-through.
CATEGORICAL = [("elbo", "analytic", False), ("elbo", "analytic", True)]
TAU = 0.7


def test_every_engine_family_has_a_reference():
    assert set(REFERENCE_LIKELIHOODS) == set(_C.LIKELIHOODS)
    assert set(GAUSSIAN_SCALES) == set(_C.GAUSSIAN_SCALES)
    assert set(_C.LATENTS) == {"gaussian", "categorical"}


def model_and_data(likelihood, scale, seed=0, B=5, K=3, latent="gaussian"):
    torch.manual_seed(seed)
    cat = dict(latent="categorical", categories=4) if latent == "categorical" else {}
    model = fastvae.VAE(data_dim=9, latent_dim=3, encoder_hidden=(6, 5), decoder_hidden=(5,), dtype=F64,
                        activation="tanh", likelihood=likelihood, gaussian_sigma=0.4, gaussian_scale=scale, **cat)
    if scale == "learned":
        with torch.no_grad():  # a different scale per pixel, so a pixel mix-up cannot pass
            model.log_sigma.add_(torch.linspace(-0.5, 0.5, model.data_dim, dtype=F64))
    g = torch.Generator().manual_seed(seed + 1)
    u = torch.rand(B, model.data_dim, generator=g, dtype=F64)
    x = {"bernoulli": (u > 0.5).to(F64), "continuous_bernoulli": u, "gaussian": 4 * u - 2}[likelihood]
    if latent == "categorical":  # uniform noise [K, B, N*C] strictly inside (0, 1) for the Gumbel draws
        eps = torch.rand(K, B, model.code_dim, generator=g, dtype=F64).clamp(1e-6, 1 - 1e-6)
    else:
        eps = torch.randn(K, B, model.latent_dim, generator=g, dtype=F64)
    return model, x, eps


class Reference:
    def __init__(self, model):
        self.m = model
        self.ps = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]
        self.n_enc, self.n_dec = 2 * (len(model.encoder) + 1), 2 * len(model.decoder)

    def _mlp(self, h, flat):
        layers = list(zip(flat[0::2], flat[1::2]))
        for k, (w, b) in enumerate(layers):
            h = F.linear(h, w, b)
            if k + 1 < len(layers):
                h = ACT[self.m.activation](h, self.m.negative_slope)
        return h

    def q(self, x):
        m, Z = self.m, self.m.latent_dim
        head = self._mlp(x, self.ps[:self.n_enc])
        mu = ACT[m.mean_activation](head[:, :Z], m.negative_slope)
        s = ACT[m.scale_activation](head[:, Z:], m.negative_slope)
        sigma = {"logvar": lambda: torch.exp(s / 2), "logstd": lambda: torch.exp(s), "std": lambda: s}[m.posterior]()
        return Normal(mu, sigma)

    def q_logits(self, x):
        """Categorical posterior logits [B, N, K]."""
        return self._mlp(x, self.ps[:self.n_enc]).reshape(x.shape[0], self.m.latent_dim, self.m.categories)

    def px(self, z):
        out = self._mlp(z, self.ps[self.n_enc:self.n_enc + self.n_dec])
        return REFERENCE_LIKELIHOODS[self.m.likelihood](self.m, out, self.ps)

    def terms(self, x, eps, detach_q=False):
        """log p(x | z_l) and log p(z_l) - log q(z_l | x), [K, B], z_l = mu + sigma eps_l (q's parameters
        held fixed inside log q if detach_q), and q, p(z)."""
        K, B, Z = eps.shape
        qz = self.q(x)
        z = qz.loc + qz.scale * eps
        log_px = self.px(z.reshape(K * B, Z)).log_prob(x.repeat(K, 1)).sum(-1).reshape(K, B)
        prior = Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale))
        q_eval = Normal(qz.loc.detach(), qz.scale.detach()) if detach_q else qz
        return log_px, prior.log_prob(z).sum(-1) - q_eval.log_prob(z).sum(-1), qz, prior

    def grads(self, objective):
        return list(torch.autograd.grad(objective, self.ps, allow_unused=True))


def categorical_reference(model, x, u, hard, weights):
    """ELBO of a categorical latent (Jang et al. 2017): decoder input y = softmax((logits + G) / tau) per
    variable, G = -log(-log u) Gumbel noise, one_hot(argmax y) forward with y's gradient if hard (straight
    through); rec = 1/L sum_l log p(x | y_l); KL(q || uniform) analytic."""
    ref = Reference(model)
    L, B, NK = u.shape
    N, K = model.latent_dim, model.categories
    logits = ref.q_logits(x)
    y = torch.softmax((logits.unsqueeze(0) - torch.log(-torch.log(u.reshape(L, B, N, K)))) / TAU, -1)
    if hard:
        y = F.one_hot(y.argmax(-1), K).to(y.dtype) - y.detach() + y
    log_px = ref.px(y.reshape(L * B, NK)).log_prob(x.repeat(L, 1)).sum(-1).reshape(L, B)
    uniform = Categorical(logits=torch.zeros_like(logits))
    value = log_px.mean(0) - kl_divergence(Categorical(logits=logits), uniform).sum(-1)
    return value.detach(), ref.grads((weights * value).sum())


def reference(model, x, eps, objective, estimator, weights):
    """(per-image value, gradient of sum_i weights_i value_i in fastvae's parameter order), by definition:
    the ELBO with an analytic, Monte Carlo or STL KL (Roeder et al. 2017); the IWAE bound (Burda et al. 2016)
    with its reparameterization, STL or DReG (Tucker et al. 2018) encoder gradient."""
    ref = Reference(model)
    if objective == "elbo":
        log_px, log_ratio, qz, prior = ref.terms(x, eps, detach_q=estimator == "stl")
        kl = kl_divergence(qz, prior).sum(-1) if estimator == "analytic" else -log_ratio.mean(0)
        value = log_px.mean(0) - kl
        return value.detach(), ref.grads((weights * value).sum())
    bound = lambda lw: torch.logsumexp(lw, 0) - math.log(lw.shape[0])  # noqa: E731
    log_w = lambda detach_q: sum(ref.terms(x, eps, detach_q)[:2])  # noqa: E731
    value = bound(log_w(False))
    if estimator == "reparam":
        return value.detach(), ref.grads((weights * value).sum())
    lw_fixed = log_w(True)
    if estimator == "stl":
        return value.detach(), ref.grads((weights * bound(lw_fixed)).sum())
    wn = torch.softmax(lw_fixed, 0).detach()  # DReG: encoder from sum_l wn_l^2 log w_l, the rest from the bound
    enc = ref.grads((weights * (wn ** 2 * lw_fixed).sum(0)).sum())
    rest = ref.grads((weights * value).sum())
    return value.detach(), enc[:ref.n_enc] + rest[ref.n_enc:]


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
    value, ref_grads = categorical_reference(model, x, u, hard, weights)
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
