"""Objective heads: the per-image ELBO terms and the IWAE bound of a Gaussian-posterior VAE as ops with a
hand-written backward, for any encoder and decoder (``torch.nn.Module`` s of the user's) on any device.

The caller runs its own networks: ``mu, sigma`` from the encoder, ``z = mu + sigma * eps`` (with autograd, so
the encoder gets the reparameterization gradient through ``z``), ``decoder_out = decoder(z)``. The heads then
give the objective and, in backward, the gradients with respect to ``decoder_out``, ``z``, ``mu`` and
``sigma``. On the CPU fused C++ kernels run (``cpp/cpu/heads_kernel.cpp``); every other device gets the
device-generic ATen implementation (``cpp/generic/heads.cpp``). Formulas and conventions: docs/heads.md.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch

from ._extension import _C  # noqa: F401  (registers the ops)
from . import _checks, arch
from ._ops import check_devices
from .types import ELBO

ops = torch.ops.fastvae

# The names come from the C++ tables (fastvae._C, via fastvae.arch): one definition for both languages.
LIKELIHOODS = arch.LIKELIHOODS
GAUSSIAN_SCALES = tuple(s for s in arch.GAUSSIAN_SCALES if s != "learned")  # a learned scale is a decoder output
ELBO_ESTIMATORS = arch.ESTIMATORS
IWAE_ESTIMATORS = arch.IWAE_ESTIMATORS
_FLOATS = (torch.float32, torch.float64)


def _well_formed(x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale, estimator, estimators):
    """The usual call, recognised in a few attribute reads (the heads run once per training step; the full checks
    below cost as much as a small kernel). Anything unusual goes through the full checks and their messages.
    Plain comparisons rather than generators: this runs on every call, and a generator costs a microsecond."""
    T = torch.Tensor
    if not (isinstance(x, T) and isinstance(out, T) and isinstance(z, T) and isinstance(mu, T)
            and isinstance(sigma, T)):
        return False
    dtype, device = x.dtype, x.device
    if (dtype not in _FLOATS or out.dtype != dtype or z.dtype != dtype or mu.dtype != dtype or sigma.dtype != dtype
            or out.device != device or z.device != device or mu.device != device or sigma.device != device):
        return False
    if type(gaussian_sigma) not in (float, int) or not 0 < gaussian_sigma < math.inf:
        return False
    if (likelihood not in LIKELIHOODS or gaussian_scale not in GAUSSIAN_SCALES or estimator not in estimators
            or (gaussian_scale == "predicted" and likelihood != "gaussian")):
        return False
    if x.dim() != 2 or out.dim() != 3 or z.dim() != 3 or mu.dim() != 2:
        return False
    (B, D), (L, Z) = x.shape, (out.shape[0], mu.shape[1])
    width = 2 * D if gaussian_scale == "predicted" else D
    return (B > 0 and D > 0 and L > 0 and Z > 0 and out.shape[1:] == (B, width) and z.shape == (L, B, Z)
            and mu.shape[0] == B and sigma.shape == mu.shape)


def _check(where, x, decoder_out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale, estimator, estimators):
    if _well_formed(x, decoder_out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale, estimator, estimators):
        return float(gaussian_sigma)
    _checks.choice(where, "likelihood", likelihood, LIKELIHOODS)
    _checks.choice(where, "gaussian_scale", gaussian_scale, GAUSSIAN_SCALES)
    _checks.choice(where, "estimator", estimator, estimators)
    if gaussian_scale == "predicted" and likelihood != "gaussian":
        raise ValueError(f"{where}: gaussian_scale 'predicted' needs likelihood 'gaussian', got {likelihood!r}")
    gaussian_sigma = _checks.positive(where, "gaussian_sigma", gaussian_sigma)
    named = dict(x=x, decoder_out=decoder_out, z=z, mu=mu, sigma=sigma)
    for (name, t), dim in zip(named.items(), (2, 3, 3, 2, 2)):
        _checks.tensor(where, name, t, dtypes=_FLOATS, dim=dim)
    for name, t in named.items():
        if t.dtype != x.dtype:
            raise TypeError(f"{where}: {name} must have x's dtype {x.dtype}, got {t.dtype}")
    _checks.same_device(where, **named)
    B, D = x.shape
    L, Z = decoder_out.shape[0], mu.shape[1]
    width = 2 * D if gaussian_scale == "predicted" else D
    if B == 0 or D == 0 or L == 0 or Z == 0:
        raise ValueError(f"{where}: empty inputs, got x {tuple(x.shape)}, decoder_out {tuple(decoder_out.shape)}, "
                         f"mu {tuple(mu.shape)}")
    if tuple(decoder_out.shape) != (L, B, width):
        raise ValueError(f"{where}: decoder_out must have shape [L, {B}, {width}], got {tuple(decoder_out.shape)}")
    if tuple(z.shape) != (L, B, Z):
        raise ValueError(f"{where}: z must have shape [{L}, {B}, {Z}], got {tuple(z.shape)}")
    if tuple(sigma.shape) != (B, Z) or mu.shape[0] != B:
        raise ValueError(f"{where}: mu and sigma must have shape [{B}, Z], got {tuple(mu.shape)} and "
                         f"{tuple(sigma.shape)}")
    # The data checks (NaN, finite sigma > 0, binary x / x in [0, 1]) are in C++ (fused kernel: in its own pass, no
    # temporaries; generic path: ATen reductions) and raise ValueError.
    return gaussian_sigma


def elbo_terms(x, decoder_out, z, mu, sigma, *, likelihood="bernoulli", gaussian_sigma=1.0,
               gaussian_scale="fixed", estimator="analytic") -> ELBO:
    """Per-image ELBO terms of a VAE with posterior N(mu, diag sigma^2) and prior N(0, I) (Kingma & Welling 2014).

    Args:
        x: [B, D] targets, float32 or float64, no gradient: binary for ``"bernoulli"``, in [0, 1] for
            ``"continuous_bernoulli"``, real for ``"gaussian"``.
        decoder_out: [L, B, D] decoder output per latent sample: logits (bernoulli, continuous_bernoulli) or the
            mean (gaussian, ``gaussian_scale="fixed"``); [L, B, 2D] for ``gaussian_scale="predicted"`` (mean
            ``[..., :D]``, log-variance ``[..., D:]``), as in :class:`fastvae.VAE`.
        z: [L, B, Z] latent samples ``mu + sigma * eps`` formed by the caller with autograd.
        mu, sigma: [B, Z] posterior parameters (sigma finite and > 0).
        likelihood: ``"bernoulli"``, ``"continuous_bernoulli"`` (Loaiza-Ganem & Cunningham 2019) or
            ``"gaussian"``; gaussian_sigma: the fixed standard deviation (> 0) of ``"gaussian"``/``"fixed"``.
        estimator: the KL term: ``"analytic"`` closed form from (mu, sigma); ``"mc"`` the mean over L of
            log q(z|x) - log p(z); ``"stl"`` the same value with q's parameters held fixed, gradient only
            through z (sticking the landing, Roeder et al. 2017).

    Returns:
        :class:`fastvae.ELBO` (elbo, rec, kl), each [B] in nats: rec = mean over L of log p(x | decoder_out),
        elbo = rec - kl. Differentiable with respect to decoder_out, z, mu and sigma (hand-written backward).

    Raises:
        TypeError: a non-tensor, a dtype other than float32/float64 or mixed dtypes, a non-string name.
        ValueError: unknown names, wrong shapes, mixed devices, NaN inputs, sigma <= 0 or infinite,
            gaussian_sigma <= 0, non-binary x for bernoulli, x outside [0, 1] for continuous_bernoulli.
    """
    where = "fastvae.heads.elbo_terms"
    gs = _check(where, x, decoder_out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale, estimator,
                ELBO_ESTIMATORS)
    if x.requires_grad:
        raise ValueError(f"{where}: x must not require a gradient (the heads give none for the data); detach it")
    return ELBO(*ops.elbo_terms(x, decoder_out, z, mu, sigma, likelihood, gs, gaussian_scale, estimator))


def iwae_bound(x, decoder_out, z, mu, sigma, *, likelihood="bernoulli", gaussian_sigma=1.0,
               gaussian_scale="fixed", estimator="reparam") -> Tuple[torch.Tensor, torch.Tensor]:
    """Importance-weighted bound (Burda et al. 2016) per image, with K = L samples.

    log w_kb = log p(x_b | decoder_out_kb) + log p(z_kb) - log q(z_kb | x_b);
    bound_b = logsumexp_k log w_kb - log K; weights = softmax_k(log w) (normalised importance weights w~).
    Arguments, shapes and errors as :func:`elbo_terms`, with ``estimator`` one of:

    - ``"reparam"``: the full gradient of the bound;
    - ``"stl"``: q's parameters held fixed inside log q (gradient to mu, sigma only through z);
    - ``"dreg"`` (doubly reparameterized, Tucker et al. 2019): decoder_out gets the ordinary gradient
      (weighted by w~), z gets the gradient of log p(z) - log q(z) (q's parameters fixed) weighted by w~^2,
      mu and sigma get no direct gradient. The decoder path of the DReG z-gradient needs w~^2 too, which the
      head cannot apply (it only sees decoder_out): register a gradient hook on the decoder's input ``z`` that
      multiplies the gradient arriving from the decoder by the returned ``weights`` (unsqueezed to
      [K, B, 1]); see docs/heads.md.

    Returns:
        (bound [B], weights [K, B]); ``weights`` is detached (no gradient flows through it).
    """
    where = "fastvae.heads.iwae_bound"
    gs = _check(where, x, decoder_out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale, estimator,
                IWAE_ESTIMATORS)
    if x.requires_grad:
        raise ValueError(f"{where}: x must not require a gradient (the heads give none for the data); detach it")
    bound, weights = ops.iwae_bound(x, decoder_out, z, mu, sigma, likelihood, gs, gaussian_scale, estimator)
    return bound, weights.detach()


# -- fake (meta) kernels of the heads and their _generic_ twins (same schemas); their autograd is in C++
# (cpp/autograd/heads_autograd.cpp): the public op runs the private forward, which also writes the gradient
# with respect to decoder_out when one is needed, and the private backward scales it.
def likelihood_mean(decoder_out: torch.Tensor, likelihood: str = "bernoulli", gaussian_sigma: float = 1.0,
                    gaussian_scale: str = "fixed") -> torch.Tensor:
    """Mean of p(x | decoder output) per pixel: [..., D] for decoder_out [..., D] ([..., 2D], mean then
    log-variance, with ``gaussian_scale="predicted"``), in decoder_out's dtype, from the likelihood's formula file
    (cpp/likelihoods/): sigmoid(a) for bernoulli; for continuous_bernoulli (Loaiza-Ganem & Cunningham 2019)
    ``lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda)) = 1 / (1 - exp(-a)) - 1 / a``, computed in float64 with
    ``expm1`` for large |a| and ``1/2 + a/12 - a^3/720 + a^5/30240`` near a = 0, values in (0, 1); the decoder's
    mean output for gaussian and laplace. Differentiable (a composite of ATen ops); any device.

    Raises (the op's checks): RuntimeError for an unknown likelihood or gaussian_scale, "predicted" with another
    likelihood, gaussian_sigma <= 0, a decoder_out that is not a float tensor or whose width does not fit."""
    return ops.likelihood_mean(decoder_out, likelihood, gaussian_sigma, gaussian_scale)


def _decoder_grad_fake(x, out, wanted):
    """decoder_out's gradient from a private forward or backward op: decoder_out's shape, or [0] if not wanted."""
    return torch.empty_like(out) if wanted else x.new_empty(0)


def _grads_fake(x, out, z, mu, sigma, decoder_out_grad):
    return (_decoder_grad_fake(x, out, decoder_out_grad), torch.empty_like(z), torch.empty_like(mu),
            torch.empty_like(sigma))


def _register(public, private):
    @torch.library.register_fake(f"fastvae::{public}elbo_terms")
    def _terms_fake(x, out, z, mu, sigma, *names):
        check_devices("elbo_terms", x=x, decoder_out=out, z=z, mu=mu, sigma=sigma)
        b = x.shape[0]
        return x.new_empty(b), x.new_empty(b), x.new_empty(b)

    @torch.library.register_fake(f"fastvae::{private}elbo_terms_forward")
    def _terms_forward_fake(x, out, z, mu, sigma, *names_and_decoder_grad):
        return (*_terms_fake(x, out, z, mu, sigma), _decoder_grad_fake(x, out, names_and_decoder_grad[-1]))

    @torch.library.register_fake(f"fastvae::{private}elbo_terms_backward")
    def _terms_bw_fake(g_rec, g_kl, x, out, z, mu, sigma, decoder_out_grad, *names):
        check_devices("_elbo_terms_backward", g_rec=g_rec, g_kl=g_kl, x=x, decoder_out=out, z=z, mu=mu,
                      sigma=sigma)
        return _grads_fake(x, out, z, mu, sigma, decoder_out_grad)

    @torch.library.register_fake(f"fastvae::{public}iwae_bound")
    def _bound_fake(x, out, z, mu, sigma, *names):
        check_devices("iwae_bound", x=x, decoder_out=out, z=z, mu=mu, sigma=sigma)
        return x.new_empty(x.shape[0]), x.new_empty(out.shape[0], x.shape[0])

    @torch.library.register_fake(f"fastvae::{private}iwae_bound_forward")
    def _bound_forward_fake(x, out, z, mu, sigma, *names_and_decoder_grad):
        return (*_bound_fake(x, out, z, mu, sigma), _decoder_grad_fake(x, out, names_and_decoder_grad[-1]))

    @torch.library.register_fake(f"fastvae::{private}iwae_bound_backward")
    def _bound_bw_fake(g, weights, x, out, z, mu, sigma, decoder_out_grad, *names):
        check_devices("_iwae_bound_backward", g=g, weights=weights, x=x, decoder_out=out, z=z, mu=mu, sigma=sigma)
        return _grads_fake(x, out, z, mu, sigma, decoder_out_grad)


_register("", "_")
_register("_generic_", "_generic_")
