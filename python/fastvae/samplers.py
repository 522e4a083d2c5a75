"""Reparameterized samplers with hand-written C++ forward and backward kernels.

* Gumbel-softmax / Concrete relaxation of a categorical (Jang, Gu & Poole 2017, "Categorical
  Reparameterization with Gumbel-Softmax"; Maddison, Mnih & Teh 2017): ``y = softmax((logits + G) / tau)``,
  ``G = -log(-log U)``; the hard variant is the straight-through estimator of Jang et al. (Sec. 2.2).
* Exponential by the inverse CDF (DD2434 Assignment 1B): ``z = -log(1 - U) / rate``.

The uniforms U lie strictly inside (0, 1) (float32: on the grid (k + 1/2) 2^-23, float64:
(k + 1/2) 2^-52), so samples are never NaN, 0 or inf. Without ``noise`` they come from a counter-based
generator (SplitMix64 of seed and flat index) whose seed is drawn from ``generator`` (or torch's default
generator): a fixed seed gives the same sample whatever the number of threads. ``noise`` injects the
uniforms directly (for tests and for sharing draws with a reference implementation).
"""
from typing import Optional, Sequence

import torch

from . import _C  # noqa: F401  (registers the ops)

ops = torch.ops.fastvae


def _seed(generator: Optional[torch.Generator]) -> int:
    """A 63-bit seed for the C++ counter-based generator, drawn from a torch generator."""
    return int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())


# -- op registrations for autograd and torch.compile --------------------------------------------------
@torch.library.register_fake("fastvae::gumbel_softmax_fwd")
def _gumbel_softmax_fwd_fake(logits, uniform, tau, dim, seed):
    return logits.new_empty(logits.shape)


@torch.library.register_fake("fastvae::gumbel_softmax_bwd")
def _gumbel_softmax_bwd_fake(grad, y, tau, dim):
    return y.new_empty(y.shape)


@torch.library.register_fake("fastvae::one_hot_argmax")
def _one_hot_argmax_fake(y, dim):
    return y.new_empty(y.shape)


@torch.library.register_fake("fastvae::exponential_fwd")
def _exponential_fwd_fake(rate, uniform, sample_shape, seed):
    return rate.new_empty((*sample_shape, *rate.shape))


@torch.library.register_fake("fastvae::exponential_bwd")
def _exponential_bwd_fake(grad, z, rate):
    return rate.new_empty(rate.shape)


def _gumbel_setup(ctx, inputs, output):
    _, _, tau, dim, _ = inputs
    ctx.save_for_backward(output)
    ctx.tau, ctx.dim = tau, dim


def _gumbel_backward(ctx, grad):
    (y,) = ctx.saved_tensors
    g = ops.gumbel_softmax_bwd(grad, y, ctx.tau, ctx.dim) if ctx.needs_input_grad[0] else None
    return g, None, None, None, None


def _one_hot_setup(ctx, inputs, output):
    pass


def _one_hot_backward(ctx, grad):
    # straight-through: the hard sample passes the gradient of the soft sample unchanged
    return grad, None


def _exponential_setup(ctx, inputs, output):
    rate = inputs[0]
    ctx.save_for_backward(output, rate)


def _exponential_backward(ctx, grad):
    z, rate = ctx.saved_tensors
    g = ops.exponential_bwd(grad, z, rate) if ctx.needs_input_grad[0] else None
    return g, None, None, None


torch.library.register_autograd("fastvae::gumbel_softmax_fwd", _gumbel_backward, setup_context=_gumbel_setup)
torch.library.register_autograd("fastvae::one_hot_argmax", _one_hot_backward, setup_context=_one_hot_setup)
torch.library.register_autograd("fastvae::exponential_fwd", _exponential_backward,
                                setup_context=_exponential_setup)


# -- public API -----------------------------------------------------------------------------------------
def _logits_from(logits, probs, dim):
    if (logits is None) == (probs is None):
        raise ValueError("pass exactly one of logits and probs")
    if logits is not None:
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
        return logits
    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"probs must be a torch.Tensor, got {type(probs).__name__}")
    if not probs.is_floating_point():
        raise TypeError(f"probs must be float32 or float64, got {probs.dtype}")
    with torch.no_grad():
        if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
            raise ValueError("probs must be finite and non-negative")
        total = probs.sum(dim)
        tol = 1e-5 if probs.dtype == torch.float32 else 1e-10
        if not bool(((total - 1).abs() <= tol * probs.shape[dim]).all()):
            raise ValueError(f"probs must sum to one along dim {dim} (largest deviation "
                             f"{(total - 1).abs().max().item():.3g})")
    return probs.log()  # zero probabilities become -inf logits: never drawn


def gumbel_softmax(logits: Optional[torch.Tensor] = None, tau: float = 1.0, hard: bool = False, dim: int = -1,
                   generator: Optional[torch.Generator] = None, noise: Optional[torch.Tensor] = None, *,
                   probs: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Relaxed one-hot sample ``softmax((logits + G) / tau)`` along ``dim``, ``G_i = -log(-log U_i)``
    (Jang et al. 2017, eq. 1-2; DD2434 A1B), differentiable in ``logits`` (or ``probs``).

    Args:
        logits: float32/float64 unnormalized log-probabilities, any shape; ``-inf`` marks a class of
            probability zero (never drawn). Give ``logits`` or ``probs``, not both.
        tau: temperature > 0. Small tau approaches one-hot samples.
        hard: return the one-hot of the argmax instead, with the gradient of the soft sample
            (straight-through, Jang et al. 2017 Sec. 2.2).
        dim: the class dimension.
        generator: torch.Generator that seeds the draws (torch's default generator if None).
        noise: optional uniforms U strictly inside (0, 1), shape and dtype of ``logits``.
        probs: class probabilities (non-negative, summing to one along ``dim``), instead of logits.

    Returns:
        Tensor of the shape and dtype of ``logits``, rows on the probability simplex (one-hot if ``hard``).

    Raises:
        ValueError: tau <= 0 or not finite, both or neither of logits/probs, probs negative or not
            summing to one.
        RuntimeError: NaN or +inf logits, a row of all -inf logits, noise outside (0, 1) or of the wrong
            shape/dtype, dtype other than float32/float64, dim out of range.
    """
    tau = float(tau)
    if not (tau > 0 and tau < float("inf")):
        raise ValueError(f"temperature tau must be positive and finite, got {tau}")
    logits = _logits_from(logits, probs, dim)
    y = ops.gumbel_softmax_fwd(logits, noise, tau, int(dim), 0 if noise is not None else _seed(generator))
    return ops.one_hot_argmax(y, int(dim)) if hard else y


def categorical_rsample(logits: Optional[torch.Tensor] = None, tau: float = 0.1, sample_shape: Sequence[int] = (),
                        dim: int = -1, generator: Optional[torch.Generator] = None,
                        noise: Optional[torch.Tensor] = None, one_hot: bool = False, *,
                        probs: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Categorical draws by the DD2434 A1B recipe: a Gumbel-softmax sample at temperature ``tau``, then
    its argmax. The argmax of ``(logits + G) / tau`` is an exact Categorical(softmax(logits)) draw
    (Gumbel-max trick) for every tau.

    Args:
        logits / probs: as in :func:`gumbel_softmax`, classes along ``dim``.
        tau: temperature > 0 (the assignment uses 0.1).
        sample_shape: draws per distribution, prepended to the batch shape.
        noise: optional uniforms of shape ``sample_shape + logits.shape``.
        one_hot: return the one-hot sample with the straight-through gradient instead of indices.

    Returns:
        int64 class indices of shape ``sample_shape + logits.shape`` without ``dim`` (not differentiable),
        or with ``one_hot=True`` a float one-hot tensor of shape ``sample_shape + logits.shape``.

    Raises: as :func:`gumbel_softmax`.
    """
    logits = _logits_from(logits, probs, dim)
    sample_shape = tuple(int(s) for s in sample_shape)
    d = dim if dim < 0 else dim + len(sample_shape)
    if sample_shape:
        logits = logits.expand(*sample_shape, *logits.shape)
    y = gumbel_softmax(logits, tau, hard=one_hot, dim=d, generator=generator, noise=noise)
    return y if one_hot else y.argmax(d)


def exponential_rsample(rate, sample_shape: Sequence[int] = (), generator: Optional[torch.Generator] = None,
                        noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Reparameterized Exp(rate) sample by the inverse CDF, ``z = -log(1 - U) / rate`` (DD2434 A1B),
    differentiable in ``rate`` with ``dz/drate = -z / rate``.

    Args:
        rate: float32/float64 tensor (or a Python float) of rates (inverse means), all > 0 and finite.
        sample_shape: number of draws per rate, prepended to ``rate.shape``.
        generator: torch.Generator that seeds the draws (torch's default generator if None).
        noise: optional uniforms strictly inside (0, 1) of shape ``sample_shape + rate.shape``.

    Returns:
        Tensor of shape ``sample_shape + rate.shape`` and the dtype of ``rate``; every entry in (0, inf).

    Raises:
        RuntimeError: a rate <= 0, NaN, inf or so small that the sample overflows; noise outside (0, 1)
            or of the wrong shape/dtype; dtype other than float32/float64.
        TypeError: rate is neither a tensor nor a number.
    """
    if not isinstance(rate, torch.Tensor):
        if not isinstance(rate, (int, float)):
            raise TypeError(f"rate must be a tensor or a number, got {type(rate).__name__}")
        rate = torch.tensor(float(rate), dtype=torch.get_default_dtype())
    sample_shape = [int(s) for s in sample_shape]
    return ops.exponential_fwd(rate, noise, sample_shape, 0 if noise is not None else _seed(generator))
