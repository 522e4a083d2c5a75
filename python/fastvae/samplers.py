"""Reparameterized samplers with hand-written C++ forward and backward kernels.

* Gumbel-softmax / Concrete relaxation of a categorical (Jang, Gu & Poole 2017, "Categorical
  Reparameterization with Gumbel-Softmax"; Maddison, Mnih & Teh 2017): ``y = softmax((logits + G) / tau)``,
  ``G = -log(-log U)``; the hard variant is the straight-through estimator of Jang et al. (Sec. 2.2).
* Exponential by the inverse CDF (DD2434 Assignment 1B): ``z = -log(1 - U) / rate``.

The uniforms U lie strictly inside (0, 1) (float32: on the grid (k + 1/2) 2^-23, float64:
(k + 1/2) 2^-52), so samples are never NaN, 0 or inf. Without ``noise`` they come from a counter-based
generator (SplitMix64 of seed and flat index) whose seed is drawn from ``generator`` (or torch's default
generator): a fixed seed gives the same sample whatever the number of threads. The seed is a 0-d int64
tensor drawn by a torch random op and read by the kernel, so ``torch.compile(..., fullgraph=True)`` traces
the samplers without a graph break (with ``generator=None``: Dynamo cannot trace a torch.Generator argument).
``noise`` injects the uniforms directly (for tests and for sharing draws with a reference implementation).
"""
import math
from typing import Optional, Sequence

import torch

from ._extension import _C  # noqa: F401  (registers the ops)
from . import _checks
from ._ops import check_devices, check_size

ops = torch.ops.fastvae


def _seed(generator: Optional[torch.Generator], like: torch.Tensor) -> torch.Tensor:
    """A 63-bit seed for the C++ counter-based generator: a 0-d int64 tensor on ``like``'s device, drawn from
    ``generator`` (torch's default generator if None). The functional aten.random, not Tensor.random_, which
    Dynamo does not trace; it takes the same draw as random_, so a generator state gives the samples it gave
    when the seed was read out with .item()."""
    dev = generator.device if generator is not None else like.device
    seed = torch.ops.aten.random.default(torch.empty((), dtype=torch.int64, device=dev), generator=generator)
    return seed.to(like.device)


# -- op registrations for autograd and torch.compile --------------------------------------------------
@torch.library.register_fake("fastvae::gumbel_softmax_fwd")
def _gumbel_softmax_fwd_fake(logits, uniform, tau, dim, seed):
    check_devices("gumbel_softmax_fwd", logits=logits, uniform=uniform, seed=seed)
    return logits.new_empty(logits.shape)


@torch.library.register_fake("fastvae::_gumbel_softmax_backward")
def _gumbel_softmax_backward_fake(grad, y, tau, dim):
    check_devices("_gumbel_softmax_backward", grad=grad, y=y)
    return y.new_empty(y.shape)


@torch.library.register_fake("fastvae::one_hot_argmax")
def _one_hot_argmax_fake(y, dim):
    check_devices("one_hot_argmax", y=y)
    return y.new_empty(y.shape)


@torch.library.register_fake("fastvae::exponential_fwd")
def _exponential_fwd_fake(rate, uniform, sample_shape, seed):
    check_devices("exponential_fwd", rate=rate, uniform=uniform, seed=seed)
    return rate.new_empty((*sample_shape, *rate.shape))


@torch.library.register_fake("fastvae::_exponential_backward")
def _exponential_backward_fake(grad, z, rate):
    check_devices("_exponential_backward", grad=grad, z=z, rate=rate)
    return rate.new_empty(rate.shape)


def _gumbel_setup(ctx, inputs, output):
    _, _, tau, dim, _ = inputs
    ctx.save_for_backward(output)
    ctx.tau, ctx.dim = tau, dim


def _gumbel_backward(ctx, grad):
    (y,) = ctx.saved_tensors
    g = ops._gumbel_softmax_backward(grad, y, ctx.tau, ctx.dim) if ctx.needs_input_grad[0] else None
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
    g = ops._exponential_backward(grad, z, rate) if ctx.needs_input_grad[0] else None
    return g, None, None, None


torch.library.register_autograd("fastvae::gumbel_softmax_fwd", _gumbel_backward, setup_context=_gumbel_setup)
torch.library.register_autograd("fastvae::one_hot_argmax", _one_hot_backward, setup_context=_one_hot_setup)
torch.library.register_autograd("fastvae::exponential_fwd", _exponential_backward,
                                setup_context=_exponential_setup)


# -- public API -----------------------------------------------------------------------------------------
_FLOATS = (torch.float32, torch.float64)


def _generator(where, generator):
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{where}: generator must be a torch.Generator or None, got {type(generator).__name__}")


def _noise(where, noise, like):
    """Injected uniforms: None or a tensor on the device of ``like`` (shape, dtype, range checked in C++)."""
    if noise is not None:
        _checks.tensor(where, "noise", noise)
        _checks.same_device(where, **{"noise": noise, "logits" if where != "exponential_rsample" else "rate": like})


def _class_dim(where, dim, t):
    """``dim`` as an int inside [-t.dim(), t.dim()) (TypeError for 1.5, ValueError out of range)."""
    dim = _checks.integer(where, "dim", dim)
    if t.dim() == 0:
        raise ValueError(f"{where}: logits must have at least one dimension (the classes), got a 0-d tensor")
    if not -t.dim() <= dim < t.dim():
        raise ValueError(f"{where}: dim must lie in [{-t.dim()}, {t.dim() - 1}] for a {t.dim()}-d tensor, got {dim}")
    if t.shape[dim] == 0:
        raise ValueError(f"{where}: the class dimension {dim} is empty (shape {tuple(t.shape)}); need >= 1 class")
    return dim


def _logits_from(where, logits, probs, dim):
    if (logits is None) == (probs is None):
        raise ValueError(f"{where}: pass exactly one of logits and probs")
    name, t = ("logits", logits) if logits is not None else ("probs", probs)
    _checks.tensor(where, name, t, dtypes=_FLOATS)
    dim = _class_dim(where, dim, t)
    if logits is not None:
        return logits, dim
    with torch.no_grad():
        if probs.device.type != "meta":
            if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
                raise ValueError(f"{where}: probs must be finite and non-negative")
            total = probs.sum(dim)
            tol = 1e-5 if probs.dtype == torch.float32 else 1e-10
            if not bool(((total - 1).abs() <= tol * probs.shape[dim]).all()):
                raise ValueError(f"{where}: probs must sum to one along dim {dim} (largest deviation "
                                 f"{(total - 1).abs().max().item():.3g})")
    return probs.log(), dim  # zero probabilities become -inf logits: never drawn


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
        generator: torch.Generator that seeds the draws (torch's default generator if None). Under
            torch.compile(fullgraph=True) leave it None (the seed is then drawn inside the graph) or pass noise.
        noise: optional uniforms U strictly inside (0, 1), shape and dtype of ``logits``.
        probs: class probabilities (non-negative, summing to one along ``dim``), instead of logits.

    Returns:
        Tensor of the shape and dtype of ``logits``, rows on the probability simplex (one-hot if ``hard``).

    Raises:
        TypeError: logits/probs/noise not tensors, logits/probs not float32/float64, tau not a number,
            dim not an integer, hard not a bool, generator not a torch.Generator.
        ValueError: tau <= 0 or not finite, both or neither of logits/probs, probs negative or not
            summing to one, dim out of range, a 0-d tensor, noise on another device, more than
            ``2**30`` elements.
        RuntimeError: NaN or +inf logits, a row of all -inf logits, noise outside (0, 1) or of the wrong
            shape/dtype (checked in C++).
    """
    where = "gumbel_softmax"
    tau = _checks.positive(where, "tau", tau)
    _checks.flag(where, "hard", hard)
    _generator(where, generator)
    logits, dim = _logits_from(where, logits, probs, dim)
    _noise(where, noise, logits)
    check_size(where, "logits.numel()", logits.numel())
    y = ops.gumbel_softmax_fwd(logits, noise, tau, dim, None if noise is not None else _seed(generator, logits))
    return ops.one_hot_argmax(y, dim) if hard else y


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

    Raises: as :func:`gumbel_softmax`; also TypeError for a sample_shape that is not a sequence of
        integers (``(2.5,)``), ValueError for negative entries or a too large ``prod(sample_shape) * numel``.
    """
    where = "categorical_rsample"
    _checks.positive(where, "tau", tau)
    _checks.flag(where, "one_hot", one_hot)
    _generator(where, generator)
    logits, dim = _logits_from(where, logits, probs, dim)
    sample_shape = _checks.integer_sequence(where, "sample_shape", sample_shape, min=0)
    check_size(where, "prod(sample_shape) * logits.numel()", math.prod(sample_shape) * logits.numel())
    _noise(where, noise, logits)
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
        generator: torch.Generator that seeds the draws (torch's default generator if None). Under
            torch.compile(fullgraph=True) leave it None (the seed is then drawn inside the graph) or pass noise.
        noise: optional uniforms strictly inside (0, 1) of shape ``sample_shape + rate.shape``.

    Returns:
        Tensor of shape ``sample_shape + rate.shape`` and the dtype of ``rate``; every entry in (0, inf).

    Raises:
        RuntimeError: a rate <= 0, NaN, inf or so small that the sample overflows; noise outside (0, 1)
            or of the wrong shape/dtype (checked in C++).
        TypeError: rate neither a float32/float64 tensor nor a real number (bools and strings refused),
            sample_shape not a sequence of integers, noise not a tensor, generator not a torch.Generator.
        ValueError: negative sample_shape entries, more than ``2**30`` samples, noise on another device.
    """
    where = "exponential_rsample"
    if isinstance(rate, torch.Tensor):
        _checks.tensor(where, "rate", rate, dtypes=_FLOATS)
    else:
        rate = torch.tensor(_checks.real(where, "rate", rate, finite=False), dtype=torch.get_default_dtype())
    sample_shape = list(_checks.integer_sequence(where, "sample_shape", sample_shape, min=0))
    check_size(where, "prod(sample_shape) * rate.numel()", math.prod(sample_shape) * rate.numel())
    _generator(where, generator)
    _noise(where, noise, rate)
    return ops.exponential_fwd(rate, noise, sample_shape, None if noise is not None else _seed(generator, rate))
