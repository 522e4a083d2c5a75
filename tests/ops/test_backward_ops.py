"""Double backward: every private backward op of the fastvae library, enumerated from the dispatcher, returns its
gradients and makes a second backward through them raise an error naming the op (cpp/autograd_guards.cpp); and
torch.autograd.grad(..., create_graph=True) through each public objective and sampler gives the first-order
gradient, whose own gradient raises that error. An op added without a row in SAMPLES fails
test_every_backward_op_has_a_row."""
import pytest
import torch

import fastvae
from fastvae import heads

ops = torch.ops.fastvae
F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def library_ops():
    return sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("fastvae::"))


def backward_ops():
    return [n for n in library_ops() if n.endswith("_backward") or n.endswith("_bwd")]


def uniforms(shape, seed):
    return torch.rand(shape, dtype=F64, generator=gen(seed)).clamp_(1e-6, 1 - 1e-6)


def vae(**kwargs):
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=6, latent_dim=2, encoder_hidden=(4,), decoder_hidden=(3,), activation="tanh",
                       dtype=F64, **kwargs)


def binary(b, d, seed):
    return (torch.rand(b, d, generator=gen(seed)) < 0.4).to(F64)


def grad_params(model):
    return [p.detach().clone().requires_grad_() for p in model.flat_parameters()]


# -- sample arguments of each backward op, with inputs that require grad ------------------------------------
def vae_elbo_backward():
    model = vae()
    w = torch.linspace(0.5, 1.5, 3, dtype=F64)
    eps = torch.randn(2, 3, 2, dtype=F64, generator=gen(1))
    return (w, -w, binary(3, 6, 2), None, eps, grad_params(model), *model.spec().as_args(), "analytic")


def vae_iwae_bound_backward():
    model = vae()
    eps = torch.randn(2, 3, 2, dtype=F64, generator=gen(3))
    return (torch.ones(3, dtype=F64), binary(3, 6, 4), None, eps, grad_params(model), *model.spec().as_args(), "dreg", "miwae",
            2, 0.0)


def vae_categorical_elbo_backward():
    model = vae(latent="categorical", categories=3)
    w = torch.linspace(0.5, 1.5, 3, dtype=F64)
    return (w, -w, binary(3, 6, 5), None, uniforms((2, 3, 6), 6), grad_params(model), *model.spec().as_args(),
            0.7, False)


def heads_inputs(seed):
    g = gen(seed)
    x = (torch.rand(3, 4, generator=g) < 0.5).to(F64)
    out = torch.randn(2, 3, 4, dtype=F64, generator=g)
    mu = torch.randn(3, 2, dtype=F64, generator=g)
    sigma = torch.rand(3, 2, dtype=F64, generator=g) + 0.5
    z = mu + sigma * torch.randn(2, 3, 2, dtype=F64, generator=g)
    return x, [t.requires_grad_() for t in (out, z, mu, sigma)]


def elbo_terms_backward():
    x, grad = heads_inputs(7)
    w = torch.linspace(0.5, 1.5, 3, dtype=F64)
    return (w, -w, x, *grad, True, "bernoulli", 1.0, "fixed", "mc")


def iwae_bound_backward():
    x, grad = heads_inputs(8)
    weights = torch.full((2, 3), 0.5, dtype=F64)
    return (torch.ones(3, dtype=F64), weights, x, *grad, True, "bernoulli", 1.0, "fixed", "reparam")


def gumbel_softmax_backward():
    y = torch.softmax(torch.randn(4, 3, dtype=F64, generator=gen(9)), -1).requires_grad_()
    return (torch.randn(4, 3, dtype=F64, generator=gen(10)), y, 0.5, -1)


def exponential_backward():
    rate = (torch.rand(4, dtype=F64, generator=gen(11)) + 0.5).requires_grad_()
    z = torch.rand(3, 4, dtype=F64, generator=gen(12)) + 0.1
    return (torch.randn(3, 4, dtype=F64, generator=gen(13)), z, rate)


SAMPLES = {
    "vae_elbo_backward": vae_elbo_backward,
    "vae_iwae_bound_backward": vae_iwae_bound_backward,
    "vae_categorical_elbo_backward": vae_categorical_elbo_backward,
    "_elbo_terms_backward": elbo_terms_backward,
    "_generic_elbo_terms_backward": elbo_terms_backward,
    "_iwae_bound_backward": iwae_bound_backward,
    "_generic_iwae_bound_backward": iwae_bound_backward,
    "_gumbel_softmax_backward": gumbel_softmax_backward,
    "_exponential_backward": exponential_backward,
}


def tensors(value):
    """The tensors of an argument or output: a tensor, the entries of a list or tuple, nothing for the rest."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors(v)]
    return []


def detached(value):
    """``value`` with every tensor in it detached (lists and tuples rebuilt, other values as they are)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (list, tuple)):
        return type(value)(detached(v) for v in value)
    return value


def test_every_backward_op_has_a_row():
    assert set(backward_ops()) == set(SAMPLES)


def test_every_op_has_an_autograd_kernel():
    # the schema table states each op's autograd policy (cpp/ops.cpp); a formula registered with
    # torch.library.register_autograd lands on the same dispatch key; a composite op is differentiated through
    # the ATen ops it is made of
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    missing = [n for n in library_ops() if not (has(f"fastvae::{n}", "Autograd")
                                                or has(f"fastvae::{n}", "CompositeImplicitAutograd"))]
    assert missing == []


@pytest.mark.parametrize("name", backward_ops())
def test_backward_op_refuses_double_backward(name):
    args = SAMPLES[name]()
    inputs = [t for t in tensors(args) if t.requires_grad]
    assert inputs, "the sample must have inputs that require grad"
    out = tensors(getattr(ops, name)(*args))
    with torch.no_grad():  # the plain call: the autograd kernel changes no value
        plain = tensors(getattr(ops, name)(*args))
    for a, b in zip(out, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not any(t.requires_grad for t in plain)
    with_history = [t for t in out if t.requires_grad]
    assert with_history, f"{name}: no output records the double-backward guard"
    assert all(t.grad_fn.name() == "fastvae::DoubleBackwardError" for t in with_history)
    loss = sum(t.sum() for t in with_history)
    message = f"fastvae::{name}: double backward is not supported"
    with pytest.raises(RuntimeError, match=message):
        torch.autograd.grad(loss, inputs, allow_unused=True)
    with pytest.raises(RuntimeError, match=message):
        loss.backward()
    # without grad-requiring inputs (a plain first-order backward) nothing is recorded
    assert not any(t.requires_grad for t in tensors(getattr(ops, name)(*detached(list(args)))))


# -- create_graph=True through the public functions: the first order works, the second raises -------------------
def elbo_case(estimator):
    def run():
        model = vae()
        x = binary(3, 6, 20)
        eps = torch.randn(2, 3, 2, dtype=F64, generator=gen(21))
        return fastvae.elbo(model, x, eps=eps, estimator=estimator).elbo.sum(), list(model.parameters())
    return run


def categorical_elbo_case(hard):
    def run():
        model = vae(latent="categorical", categories=3)
        out = fastvae.elbo(model, binary(3, 6, 22), eps=uniforms((2, 3, 6), 23), temperature=0.7, hard=hard)
        return out.elbo.sum(), list(model.parameters())
    return run


def iwae_case(estimator):
    def run():
        model = vae()
        eps = torch.randn(4, 3, 2, dtype=F64, generator=gen(24))
        return fastvae.iwae(model, binary(3, 6, 25), eps=eps, estimator=estimator).sum(), list(model.parameters())
    return run


def heads_case(head, estimator, likelihood="bernoulli", gaussian_scale="fixed"):
    def run():
        x, grad = heads_inputs(26)
        if likelihood == "gaussian" and gaussian_scale == "predicted":
            grad[0] = torch.randn(2, 3, 8, dtype=F64, generator=gen(27)).requires_grad_()
        out = getattr(heads, head)(x, *grad, likelihood=likelihood, gaussian_scale=gaussian_scale, estimator=estimator)
        return out[0].sum(), grad
    return run


def gumbel_case(hard):
    def run():
        logits = torch.randn(4, 3, dtype=F64, generator=gen(28)).requires_grad_()
        y = fastvae.gumbel_softmax(logits, 0.5, hard=hard, noise=uniforms((4, 3), 29))
        return (y * torch.arange(3.0, dtype=F64)).sum(), [logits]
    return run


def exponential_case():
    rate = (torch.rand(4, dtype=F64, generator=gen(30)) + 0.5).requires_grad_()
    return fastvae.exponential_rsample(rate, (3,), noise=uniforms((3, 4), 31)).pow(2).sum(), [rate]


PUBLIC = ([(f"elbo-{e}", elbo_case(e), "vae_elbo_backward") for e in fastvae.arch.ESTIMATORS]
          + [(f"elbo-categorical-{'hard' if h else 'soft'}", categorical_elbo_case(h),
              "vae_categorical_elbo_backward") for h in (False, True)]
          + [(f"iwae-{e}", iwae_case(e), "vae_iwae_bound_backward") for e in fastvae.arch.IWAE_ESTIMATORS]
          + [(f"elbo_terms-{e}", heads_case("elbo_terms", e), "_elbo_terms_backward")
             for e in heads.ELBO_ESTIMATORS]
          + [("elbo_terms-gaussian-predicted", heads_case("elbo_terms", "analytic", "gaussian", "predicted"),
              "_elbo_terms_backward")]
          + [(f"iwae_bound-{e}", heads_case("iwae_bound", e), "_iwae_bound_backward")
             for e in heads.IWAE_ESTIMATORS]
          + [("gumbel_softmax-soft", gumbel_case(False), "_gumbel_softmax_backward"),
             ("gumbel_softmax-hard", gumbel_case(True), "_gumbel_softmax_backward"),
             ("exponential_rsample", exponential_case, "_exponential_backward")])


@pytest.mark.parametrize("run,op", [pytest.param(r, o, id=i) for i, r, o in PUBLIC])
def test_create_graph_gives_first_order_then_refuses(run, op):
    loss, inputs = run()
    expected = torch.autograd.grad(loss, inputs)
    loss, inputs = run()
    grads = torch.autograd.grad(loss, inputs, create_graph=True, allow_unused=True)
    used = [(g, e, i) for g, e, i in zip(grads, expected, inputs, strict=True) if g is not None]
    assert len(used) == len(inputs)
    for g, e, _ in used:
        torch.testing.assert_close(g, e, rtol=0, atol=0)
    # every first-order gradient carries the guard (none is a constant that would silently read as zero)
    assert all(g.requires_grad for g, _, _ in used)
    second = sum((g * g).sum() for g, _, _ in used)
    with pytest.raises(RuntimeError, match=f"fastvae::{op}: double backward is not supported"):
        torch.autograd.grad(second, inputs, allow_unused=True)
