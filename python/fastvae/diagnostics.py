"""Diagnostics: the signal-to-noise ratio of the IWAE bound's gradient, and the active units of a latent space.

Rainforth et al. 2018 ("Tighter variational bounds are not necessarily better") measure an estimator by the
SNR of each parameter's gradient, |E[g]| / std[g] over independent draws of the noise; the plain
(reparameterization) estimator of the encoder's gradient loses SNR as k grows, DReG (Tucker et al. 2019) does
not. Used by notebooks/iwae_dreg.ipynb and scripts/dreg_snr.py.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from . import _checks
from .api import iwae
from .models import VAE


def gradient_snr(model: VAE, x: torch.Tensor, k: int, estimator: str, params: Sequence[torch.Tensor], *,
                 draws: int = 100, generator: Optional[torch.Generator] = None) -> Tuple[float, int]:
    """Mean SNR of the gradient of the minibatch's mean IWAE bound with respect to ``params``.

    Each of ``draws`` (M) draws samples fresh noise (from ``generator``) and takes the gradient g of
    ``fastvae.iwae(model, x, k, estimator).mean()``; per parameter SNR = |mean g| / std g (the sample standard
    deviation, M - 1 in the denominator), accumulated in float64. Parameters that no draw moved (a zero
    gradient every time, e.g. weights of pixels that are 0 in every image of ``x``) are left out.

    Args:
        model: a :class:`fastvae.VAE`; x: [B, D] images as ``fastvae.iwae`` takes them; k: importance samples;
        estimator: ``"reparam"``, ``"stl"`` or ``"dreg"`` (see :func:`fastvae.iwae`); params: the tensors whose
        gradient is measured (the encoder's, say); draws: M >= 2.

    Returns:
        (the SNR averaged over the parameters that received a gradient, how many did). Its noise floor, the
        value for gradients of mean 0, is about sqrt(2 / (pi M)).

    Raises:
        ValueError: draws < 2 or no parameter given.
    """
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 2:
        raise ValueError(f"fastvae.diagnostics.gradient_snr: draws must be an integer >= 2, got {draws!r}")
    params = list(params)
    if not params:
        raise ValueError("fastvae.diagnostics.gradient_snr: params is empty")
    s = s2 = 0.0
    for _ in range(draws):
        bound = iwae(model, x, k=k, estimator=estimator, generator=generator).mean()
        g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(bound, params)]).double()
        s, s2 = s + g, s2 + g * g
    live = s2 > 0
    mean = s[live] / draws
    std = ((s2[live] - draws * mean ** 2).clamp_min(0) / (draws - 1)).sqrt()
    return (mean.abs() / std).mean().item(), int(live.sum())


def active_units(model, x, *, threshold: float = 1e-2, batch_size: int = 1000, layer: int = 1,
                 samples: int = 100, generator: Optional[torch.Generator] = None) -> Tuple[int, torch.Tensor]:
    """Active latent units (Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders", Sec. 5.2):
    unit u is active when ``A_u = Cov_x(E_q[z_u | x]) > threshold`` (1e-2 in the paper), the variance over the
    data of the posterior mean, taken as a population variance (divisor N) in float64.

    Args:
        model: a Gaussian-latent fastvae model (``model.encode`` gives the posterior mean); x: images [N, ...] as
            ``model.encode`` takes them (floats the likelihood takes, or uint8 intensities), N >= 2; threshold:
            finite > 0; batch_size: images per encoder call.
        layer: which stochastic layer (1: z1; 2, ...: the layers above z1 of a :class:`fastvae.VAE` with
            ``upper_latents``, whose posterior means ``model.layer_means`` estimates from ``samples`` draws of the
            layers below, from ``generator``).

    Returns:
        (number of active units, A [Z] float64, the statistic of every unit).

    Raises:
        ValueError: a categorical latent, fewer than two images, threshold <= 0, batch_size < 1, a layer the
            model does not have.
        TypeError: as ``model.encode`` for x.
    """
    where = "fastvae.diagnostics.active_units"
    threshold = _checks.positive(where, "threshold", threshold)
    batch_size = _checks.integer(where, "batch_size", batch_size, min=1)
    if getattr(model, "latent", "gaussian") != "gaussian":
        raise ValueError(f"{where}: active units are defined for Gaussian latents, got latent={model.latent!r}")
    if len(x) < 2:
        raise ValueError(f"{where}: need at least two images for a variance over the data, got {len(x)}")
    layers = 1 + len(getattr(model, "upper_latents", ()))
    layer = _checks.integer(where, "layer", layer, min=1, max=layers)
    if layer == 1:
        means = torch.cat([model.encode(x[s:s + batch_size])[0].double() for s in range(0, len(x), batch_size)])
    else:
        means = torch.cat([model.layer_means(x[s:s + batch_size], samples=samples, generator=generator)[layer - 1]
                           .double() for s in range(0, len(x), batch_size)])
    stat = means.var(0, unbiased=False)
    return int((stat > threshold).sum()), stat
