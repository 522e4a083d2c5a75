"""Python side of the torch.ops.fastvae operators: fake (meta) kernels for torch.compile and the
autograd formulas, which call our hand-written C++ backward kernels."""
import torch

from ._extension import _C  # noqa: F401  (registers the ops)
from . import _checks
from .arch import ESTIMATORS, ArchSpec  # noqa: F401  (ESTIMATORS: the names C++ accepts)
from .arch import IWAE_ESTIMATORS  # noqa: F401

ops = torch.ops.fastvae

# Largest number of elements one call may allocate for an output or a work buffer (4 GiB of float32):
# bigger requests are rejected up front with a clear error instead of an OOM kill.
MAX_ELEMENTS = 2 ** 30


def check_size(where: str, what: str, n: int) -> None:
    """ValueError if a request for ``n`` elements (described by ``what``) exceeds :data:`MAX_ELEMENTS`."""
    if n > MAX_ELEMENTS:
        raise ValueError(f"{where}: {what} = {n} elements exceeds the limit of {MAX_ELEMENTS} per call; "
                         "use smaller sizes or split the work into batches")


def check_devices(op: str, **args) -> None:
    """Used by every fake (meta) kernel: all tensor arguments, including the entries of Tensor[] lists and
    present optionals, on one device. A meta tensor mixed with CPU tensors would otherwise get a fake
    output on the CPU, i.e. uninitialised memory. Raises ValueError naming each tensor's device."""
    flat = {}
    for name, value in args.items():
        if isinstance(value, (list, tuple)):
            flat.update({f"{name}[{i}]": t for i, t in enumerate(value)})
        else:
            flat[name] = value
    _checks.same_device(f"fastvae::{op}", **flat)


# The VAE fakes take the architecture arguments as *arch (schema order) and read them by name.
@torch.library.register_fake("fastvae::vae_elbo")
def _vae_elbo_fake(x, y, eps, params, *arch_and_estimator):
    check_devices("vae_elbo", x=x, y=y, eps=eps, params=params)
    b = x.shape[0]
    return x.new_empty(b), x.new_empty(b), x.new_empty(b)


@torch.library.register_fake("fastvae::vae_elbo_backward")
def _vae_elbo_backward_fake(w_rec, w_kl, x, y, eps, params, *arch_and_estimator):
    check_devices("vae_elbo_backward", w_rec=w_rec, w_kl=w_kl, x=x, y=y, eps=eps, params=params)
    return [torch.empty_like(p) for p in params]


@torch.library.register_fake("fastvae::vae_encode")
def _vae_encode_fake(x, y, params, *arch):
    check_devices("vae_encode", x=x, y=y, params=params)
    spec = ArchSpec(*arch)
    z = spec.code_dim if spec.latent == "categorical" else spec.latent_dim  # categorical: log q, q [B, N*K]
    return x.new_empty(x.shape[0], z), x.new_empty(x.shape[0], z)


@torch.library.register_fake("fastvae::vae_decode")
def _vae_decode_fake(z, y, params, *arch):
    check_devices("vae_decode", z=z, y=y, params=params)
    spec = ArchSpec(*arch)
    predicted = spec.likelihood == "gaussian" and spec.gaussian_scale == "predicted"  # mean | log-variance
    return z.new_empty(z.shape[0], 2 * spec.data_dim if predicted else spec.data_dim)


@torch.library.register_fake("fastvae::vae_iwae")
def _vae_iwae_fake(x, y, eps, params, *arch):
    check_devices("vae_iwae", x=x, y=y, eps=eps, params=params)
    return x.new_empty(x.shape[0])


@torch.library.register_fake("fastvae::adam_step")
def _adam_step_fake(params, grads, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    check_devices("adam_step", params=params, grads=grads, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
    return None


def _no_grads(args) -> tuple:
    """No gradient for each non-tensor argument: None, but [] for an empty int[] (autograd compares the structure
    of the gradients with the inputs', in which an empty list is a node of its own and a list of ints a leaf)."""
    return tuple([] if isinstance(a, (list, tuple)) and len(a) == 0 else None for a in args)


def _elbo_setup_context(ctx, inputs, output):
    x, y, eps, params, *rest = inputs  # rest: the architecture arguments, then the estimator
    ctx.save_for_backward(x, eps, *params)
    ctx.y = y
    ctx.rest = rest


def _elbo_backward(ctx, g_elbo, g_rec, g_kl):
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
        # the C++ backward gives parameter gradients only; a None for x or eps would read as "no effect"
        raise RuntimeError("fastvae::vae_elbo: gradients with respect to x or eps are not implemented (only the "
                           "parameters); detach x and eps")
    x, eps, *params = ctx.saved_tensors
    # elbo = rec - kl, so an upstream gradient on elbo reaches rec with +1 and kl with -1.
    w_rec = g_elbo + g_rec
    w_kl = g_kl - g_elbo
    grads = ops.vae_elbo_backward(w_rec, w_kl, x, ctx.y, eps, params, *ctx.rest)
    return (None, None, None, list(grads)) + _no_grads(ctx.rest)


torch.library.register_autograd("fastvae::vae_elbo", _elbo_backward, setup_context=_elbo_setup_context)


# -- IWAE bound as an objective (vae_iwae_bound): value as vae_iwae, hand-written C++ gradient ----------
@torch.library.register_fake("fastvae::vae_iwae_bound")
def _vae_iwae_bound_fake(x, y, eps, params, *arch_and_estimator):
    check_devices("vae_iwae_bound", x=x, y=y, eps=eps, params=params)
    return x.new_empty(x.shape[0])


@torch.library.register_fake("fastvae::vae_iwae_bound_backward")
def _vae_iwae_bound_backward_fake(g, x, y, eps, params, *arch_and_estimator):
    check_devices("vae_iwae_bound_backward", g=g, x=x, y=y, eps=eps, params=params)
    return [torch.empty_like(p) for p in params]


def _iwae_backward(ctx, g):
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
        raise RuntimeError("fastvae::vae_iwae_bound: gradients with respect to x or eps are not implemented (only "
                           "the parameters); detach x and eps")
    x, eps, *params = ctx.saved_tensors
    grads = ops.vae_iwae_bound_backward(g, x, ctx.y, eps, params, *ctx.rest)
    return (None, None, None, list(grads)) + _no_grads(ctx.rest)


torch.library.register_autograd("fastvae::vae_iwae_bound", _iwae_backward, setup_context=_elbo_setup_context)


# -- categorical latent (vae_categorical_elbo): the ELBO's fake and autograd, C++ backward ------------------
@torch.library.register_fake("fastvae::vae_categorical_elbo")
def _vae_categorical_elbo_fake(x, y, u, params, *arch_temperature_hard):
    check_devices("vae_categorical_elbo", x=x, y=y, u=u, params=params)
    b = x.shape[0]
    return x.new_empty(b), x.new_empty(b), x.new_empty(b)


@torch.library.register_fake("fastvae::vae_categorical_elbo_backward")
def _vae_categorical_elbo_backward_fake(w_rec, w_kl, x, y, u, params, *arch_temperature_hard):
    check_devices("vae_categorical_elbo_backward", w_rec=w_rec, w_kl=w_kl, x=x, y=y, u=u, params=params)
    return [torch.empty_like(p) for p in params]


def _categorical_backward(ctx, g_elbo, g_rec, g_kl):
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
        raise RuntimeError("fastvae::vae_categorical_elbo: gradients with respect to x or u are not implemented (only "
                           "the parameters); detach x and u")
    x, u, *params = ctx.saved_tensors
    grads = ops.vae_categorical_elbo_backward(g_elbo + g_rec, g_kl - g_elbo, x, ctx.y, u, params, *ctx.rest)
    return (None, None, None, list(grads)) + _no_grads(ctx.rest)


torch.library.register_autograd("fastvae::vae_categorical_elbo", _categorical_backward,
                                setup_context=_elbo_setup_context)
