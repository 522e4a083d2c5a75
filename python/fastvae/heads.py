"""Objective heads: the per-image ELBO terms and the IWAE bound of a Gaussian-posterior VAE as ops with a
hand-written backward, for any encoder and decoder (``torch.nn.Module`` s of the user's) on any device.

The caller runs its own networks: ``mu, sigma`` from the encoder, ``z = mu + sigma * eps`` (with autograd, so
the encoder gets the reparameterization gradient through ``z``), ``decoder_out = decoder(z)``. The heads then
give the objective and, in backward, the gradients with respect to ``decoder_out``, ``z``, ``mu`` and
``sigma``. On the CPU fused C++ kernels run (``cpp/cpu/heads_kernel.cpp``); every other device gets the
device-generic ATen implementation (``cpp/generic/heads.cpp``). Formulas and conventions: docs/heads.md.

Composed from those two heads: the objectives of Rainforth et al. 2018 beside the IWAE bound, MIWAE
(:func:`miwae_bound`), CIWAE (:func:`ciwae_bound`) and PIWAE (:func:`piwae_bounds`).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch

from ._extension import _C  # noqa: F401  (registers the ops)
from . import _checks, arch
from ._ops import check_devices
from .types import ELBO, PIWAEBounds

ops = torch.ops.fastvae

# The names come from the C++ tables (fastvae._C, via fastvae.arch): one definition for both languages.
LIKELIHOODS = arch.LIKELIHOODS
GAUSSIAN_SCALES = tuple(s for s in arch.GAUSSIAN_SCALES if s != "learned")  # a learned scale is a decoder output
ELBO_ESTIMATORS = arch.ESTIMATORS
IWAE_ESTIMATORS = arch.IWAE_ESTIMATORS
_FLOATS = (torch.float32, torch.float64)
# The ELBO part of CIWAE per IWAE estimator: the DReG form of the ELBO's gradient is STL's (Tucker et al. 2019).
_CIWAE_ELBO_ESTIMATOR = {"reparam": "mc", "stl": "stl", "dreg": "stl"}


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


def _no_data_gradient(where, x):
    if x.requires_grad:
        raise ValueError(f"{where}: x must not require a gradient (the heads give none for the data); detach it")


def _grouped(where, groups, x, decoder_out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale, estimator):
    """The checks of MIWAE and PIWAE's arguments: (M, K, the names for the IWAE head but the estimator); ValueError
    if the M*K samples of z do not split into M = ``groups`` groups of K."""
    M = _checks.integer(where, "groups", groups, min=1)
    gs = _check(where, x, decoder_out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale, estimator,
                IWAE_ESTIMATORS)
    _no_data_gradient(where, x)
    samples = decoder_out.shape[0]
    if samples % M:
        raise ValueError(f"{where}: z holds {samples} samples per image, which groups = {M} does not divide "
                         f"(the samples are M groups of K: M*K of them)")
    return M, samples // M, dict(likelihood=likelihood, gaussian_sigma=gs, gaussian_scale=gaussian_scale)


def _miwae(x, decoder_out, z, mu, sigma, M, K, kw):
    """MIWAE(M, K) through the IWAE head: the M groups moved into the batch axis ([K, M*B, .], batch row
    m*B + b), x, mu and sigma tiled M times (autograd sums their gradients over the groups), the M bounds of an
    image averaged. Checked inputs only."""
    B = x.shape[0]

    def regroup(t):  # [M*K, B, n] -> [K, M*B, n]
        return t.reshape(M, K, B, t.shape[-1]).transpose(0, 1).reshape(K, M * B, t.shape[-1])

    def tile(t):  # [B, n] -> [M*B, n]
        return t.expand(M, B, t.shape[-1]).reshape(M * B, t.shape[-1])

    bound, weights = iwae_bound(tile(x), regroup(decoder_out), regroup(z), tile(mu), tile(sigma), **kw)
    return bound.view(M, B).mean(0), weights.reshape(K, M, B).transpose(0, 1).reshape(M * K, B)


def miwae_bound(x, decoder_out, z, mu, sigma, *, groups, likelihood="bernoulli", gaussian_sigma=1.0,
                gaussian_scale="fixed", estimator="reparam") -> Tuple[torch.Tensor, torch.Tensor]:
    """Multiply importance-weighted bound MIWAE(M, K) per image (Rainforth et al. 2018, ICML), M = ``groups``:
    the mean of M independent IWAE bounds (Burda et al. 2016) of K samples each,

    MIWAE_b = (1/M) sum_m [logsumexp_k log w_mkb - log K],
    log w_mkb = log p(x_b | decoder_out_lb) + log p(z_lb) - log q(z_lb | x_b),  l = m*K + k.

    The samples are group-major: ``z`` [M*K, B, Z] is ``z.view(M, K, B, Z)`` (and decoder_out likewise), so
    sample l = m*K + k is sample k of group m. groups=1 is :func:`iwae_bound` (same bits); groups = M*K is the
    ELBO with M*K samples. Computed by the IWAE head with the groups moved into the batch axis (one copy of
    decoder_out and z); x, mu and sigma are tiled with autograd, so their gradients sum over the groups.

    Args:
        groups: M, an integer >= 1 that divides the sample count M*K of ``z`` and ``decoder_out``.
        x, decoder_out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale: as :func:`elbo_terms`, with
            L = M*K samples.
        estimator: as :func:`iwae_bound`, per group: ``"reparam"``, ``"stl"`` or ``"dreg"``. With ``"dreg"``
            the head gives decoder_out the gradient w~/M d log p(x|out)/d out and z the prior-minus-posterior
            part with w~^2/M; the decoder path of z needs w~^2/M too, so register the hook of docs/heads.md on
            the decoder's input with the returned ``weights``: the multiplier is w~ within the group.

    Returns:
        (bound [B], weights [M*K, B]) in x's dtype: bound in nats; weights[m*K + k, b] = softmax over k of
        log w_mkb (the normalised importance weights within each group, each group's K weights summing to 1),
        detached.

    Raises:
        TypeError: groups not an integer (bools and floats such as 2.0 included), and :func:`elbo_terms`'s.
        ValueError: groups < 1 or not dividing the sample count, and :func:`elbo_terms`'s; an estimator that
            is not an IWAE estimator.
    """
    M, K, kw = _grouped("fastvae.heads.miwae_bound", groups, x, decoder_out, z, mu, sigma, likelihood,
                        gaussian_sigma, gaussian_scale, estimator)
    return _miwae(x, decoder_out, z, mu, sigma, M, K, dict(kw, estimator=estimator))


def ciwae_bound(x, decoder_out, z, mu, sigma, *, beta, likelihood="bernoulli", gaussian_sigma=1.0,
                gaussian_scale="fixed", estimator="reparam") -> Tuple[torch.Tensor, torch.Tensor]:
    """Combination importance-weighted bound CIWAE(beta) per image (Rainforth et al. 2018, ICML): a convex
    combination of the ELBO and the IWAE bound (Burda et al. 2016) on the same K samples,

    CIWAE_b = beta ELBO_b + (1 - beta) IWAE_b,  ELBO_b = (1/K) sum_k log w_kb,
    IWAE_b = logsumexp_k log w_kb - log K,  log w_kb = log p(x_b | decoder_out_kb) + log p(z_kb) - log q(z_kb | x_b).

    beta = 1 is ``elbo_terms(..., estimator="mc").elbo`` (same bits), beta = 0 :func:`iwae_bound` (same bits).
    Composed of the two heads: :func:`elbo_terms` (estimator ``"mc"`` for ``"reparam"``, ``"stl"`` for
    ``"stl"`` and ``"dreg"``: the DReG form of the ELBO's gradient is STL's) and :func:`iwae_bound`.

    Args:
        beta: the ELBO's share, a real number in [0, 1] (ints 0 and 1 included).
        x, decoder_out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale: as :func:`elbo_terms`, K = L.
        estimator: ``"reparam"`` (the gradient of CIWAE), ``"stl"`` (q's parameters held fixed inside log q in
            both parts) or ``"dreg"`` (beta/K times STL's gradient plus (1 - beta) times DReG's, Tucker et al.
            2019), which needs the hook of docs/heads.md with the returned ``weights``.

    Returns:
        (bound [B] in nats, weights [K, B]), in x's dtype, weights detached. For ``"reparam"`` and ``"stl"``
        the weights are the IWAE part's normalised importance weights w~_k = softmax_k(log w_k). For ``"dreg"``
        they are the multipliers r_k of the DReG hook: the head gives decoder_out the coefficient
        c_k = beta/K + (1 - beta) w~_k, the DReG encoder gradient wants p_k = beta/K + (1 - beta) w~_k^2 on the
        decoder path, so r_k = p_k / c_k (r_k = w~_k for beta = 0; 1 for beta = 1).

    Raises:
        TypeError: beta not a real number (a bool, a string, None), and :func:`elbo_terms`'s.
        ValueError: beta NaN, infinite or outside [0, 1], and :func:`elbo_terms`'s; an estimator that is not an
            IWAE estimator.
    """
    where = "fastvae.heads.ciwae_bound"
    beta = _checks.real(where, "beta", beta, min=0.0, max=1.0)
    gs = _check(where, x, decoder_out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale, estimator,
                IWAE_ESTIMATORS)
    _no_data_gradient(where, x)
    kw = dict(likelihood=likelihood, gaussian_sigma=gs, gaussian_scale=gaussian_scale)
    args = (x, decoder_out, z, mu, sigma)
    if beta == 1.0:
        bound = elbo_terms(*args, estimator=_CIWAE_ELBO_ESTIMATOR[estimator], **kw).elbo
        with torch.no_grad():  # the IWAE part has weight 0: only its normalised weights are returned
            weights = iwae_bound(*args, estimator=estimator, **kw)[1]
    else:
        iwae, weights = iwae_bound(*args, estimator=estimator, **kw)
        bound = iwae if beta == 0.0 else (
            beta * elbo_terms(*args, estimator=_CIWAE_ELBO_ESTIMATOR[estimator], **kw).elbo + (1.0 - beta) * iwae)
    if estimator == "dreg" and beta > 0.0:
        share = beta / decoder_out.shape[0]
        c = share + (1.0 - beta) * weights
        p = share + (1.0 - beta) * weights * weights
        weights = torch.where(c > 0, p / c, weights)  # c = 0 only if beta/K underflows: no decoder gradient then
    return bound, weights


def piwae_bounds(x, decoder_out, z, mu, sigma, *, groups, likelihood="bernoulli", gaussian_sigma=1.0,
                 gaussian_scale="fixed", estimator="reparam") -> PIWAEBounds:
    """The two objectives of the partially importance-weighted autoencoder PIWAE(M, K) (Rainforth et al. 2018,
    ICML) per image, on one set of M*K samples laid out as :func:`miwae_bound`'s (sample l = m*K + k):
    the inference network (encoder) ascends MIWAE(M, K), the generative network (decoder) IWAE(M*K).

    Each bound must reach only its own network's parameters, e.g.::

        b = fastvae.heads.piwae_bounds(x, out, z, mu, sigma, groups=M)
        g_enc = torch.autograd.grad(-b.encoder_bound.mean(), list(encoder.parameters()), retain_graph=True)
        g_dec = torch.autograd.grad(-b.decoder_bound.mean(), list(decoder.parameters()))

    then set each parameter's ``.grad`` and step (or ``backward(inputs=...)`` with two optimizers). Summing the
    two bounds into one loss is not PIWAE: the encoder would get IWAE(M*K)'s gradient too.

    Args:
        groups, x, decoder_out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale: as
            :func:`miwae_bound`.
        estimator: the encoder bound's (``"reparam"``, ``"stl"``, ``"dreg"``), as :func:`miwae_bound`; with
            ``"dreg"`` register the hook of docs/heads.md with the returned ``weights``. The decoder bound
            carries the plain gradient of IWAE(M*K): to the decoder's parameters the three estimators give the
            same gradient.

    Returns:
        :class:`fastvae.PIWAEBounds` (encoder_bound [B] = MIWAE(M, K), decoder_bound [B] = IWAE(M*K), in nats;
        weights [M*K, B], the normalised importance weights within each group, detached), in x's dtype.
        encoder_bound is ``miwae_bound(...)[0]`` and decoder_bound ``iwae_bound(..., estimator="reparam")[0]``
        bit for bit.

    Raises:
        as :func:`miwae_bound`.
    """
    M, K, kw = _grouped("fastvae.heads.piwae_bounds", groups, x, decoder_out, z, mu, sigma, likelihood,
                        gaussian_sigma, gaussian_scale, estimator)
    encoder_bound, weights = _miwae(x, decoder_out, z, mu, sigma, M, K, dict(kw, estimator=estimator))
    decoder_bound = iwae_bound(x, decoder_out, z, mu, sigma, estimator="reparam", **kw)[0]
    return PIWAEBounds(encoder_bound, decoder_bound, weights)


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
