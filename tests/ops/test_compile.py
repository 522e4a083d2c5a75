"""torch.compile(fullgraph=True) of every public op: values and gradients of the compiled call equal eager.

Rows with injected noise compare compiled and eager on the same draws. Rows where the sampler draws itself
compile with its seed drawn inside the graph (aten.random from torch's default generator, no .item()): after
the same torch.manual_seed the compiled call gives the eager sample (Inductor runs the draw as its ATen
kernel), a second call gives new draws, and the draws have the right distribution. Small shapes: each row
compiles once (one forward and one backward graph)."""
import math

import pytest
import scipy.stats
import torch

import fastvae
from fastvae import heads

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def uniforms(shape, seed):
    return torch.rand(shape, dtype=F64, generator=gen(seed)).clamp_(1e-6, 1 - 1e-6)


def vae(**kwargs):
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=6, latent_dim=2, encoder_hidden=(4,), decoder_hidden=(3,), activation="tanh",
                       dtype=F64, **kwargs)


def binary(b, d, seed):
    return (torch.rand(b, d, generator=gen(seed)) < 0.4).to(F64)


def weights(shape, seed):
    # a fixed weighting of the outputs, so that every output entry reaches the gradient with its own factor
    return torch.randn(shape, dtype=F64, generator=gen(seed))


# -- rows: (id, build) where build() returns (fn, args, params): fn(*args) is a scalar, params what to
# differentiate with respect to (grad-requiring args, or a model's parameters that fn closes over) ---------------
def gumbel_row(hard):
    def build():
        logits = torch.randn(4, 3, dtype=F64, generator=gen(1)).requires_grad_()
        u, w = uniforms((4, 3), 2), weights((4, 3), 3)

        def fn(logits):
            return (fastvae.gumbel_softmax(logits, 0.5, hard=hard, noise=u) * w).sum()
        return fn, (logits,), [logits]
    return build


def categorical_row():
    logits = torch.randn(3, 4, dtype=F64, generator=gen(4)).requires_grad_()
    u, w = uniforms((2, 3, 4), 5), weights((2, 3, 4), 6)

    def fn(logits):
        one_hot = fastvae.categorical_rsample(logits, 0.5, (2,), noise=u, one_hot=True)
        index = fastvae.categorical_rsample(logits.detach(), 0.5, (2,), noise=u)
        return (one_hot * w).sum() + index.sum()
    return fn, (logits,), [logits]


def exponential_row():
    rate = (torch.rand(4, dtype=F64, generator=gen(7)) + 0.5).requires_grad_()
    u, w = uniforms((3, 4), 8), weights((3, 4), 9)

    def fn(rate):
        return (fastvae.exponential_rsample(rate, (3,), noise=u) * w).sum()
    return fn, (rate,), [rate]


def elbo_row(estimator):
    def build():
        model = vae()
        x, eps = binary(3, 6, 10), torch.randn(2, 3, 2, dtype=F64, generator=gen(11))
        w = weights(3, 12)
        return (lambda x, eps: (fastvae.elbo(model, x, eps=eps, estimator=estimator).elbo * w).sum(), (x, eps),
                list(model.parameters()))
    return build


def categorical_elbo_row(hard):
    def build():
        model = vae(latent="categorical", categories=3)
        x, u = binary(3, 6, 13), uniforms((2, 3, 6), 14)
        return (lambda x, u: fastvae.elbo(model, x, eps=u, temperature=0.7, hard=hard).elbo.sum(), (x, u),
                list(model.parameters()))
    return build


def iwae_row(estimator):
    def build():
        model = vae()
        x, eps = binary(3, 6, 15), torch.randn(4, 3, 2, dtype=F64, generator=gen(16))
        return (lambda x, eps: fastvae.iwae(model, x, eps=eps, estimator=estimator).sum(), (x, eps),
                list(model.parameters()))
    return build


def heads_row(head, estimator):
    def build():
        g = gen(17)
        x = (torch.rand(3, 4, generator=g) < 0.5).to(F64)
        mu = torch.randn(3, 2, dtype=F64, generator=g).requires_grad_()
        sigma = (torch.rand(3, 2, dtype=F64, generator=g) + 0.5).requires_grad_()
        eps = torch.randn(2, 3, 2, dtype=F64, generator=g)
        w_dec = torch.randn(2, 4, dtype=F64, generator=g).requires_grad_()

        def fn(x, mu, sigma, w_dec):
            z = mu + sigma * eps  # the caller's reparameterization and decoder, traced with the head
            return getattr(heads, head)(x, z @ w_dec, z, mu, sigma, estimator=estimator)[0].sum()
        return fn, (x, mu, sigma, w_dec), [mu, sigma, w_dec]
    return build


ROWS = ([("gumbel_softmax-soft", gumbel_row(False)), ("gumbel_softmax-hard", gumbel_row(True)),
         ("categorical_rsample", categorical_row), ("exponential_rsample", exponential_row)]
        + [(f"elbo-{e}", elbo_row(e)) for e in fastvae.arch.ESTIMATORS]
        + [(f"elbo-categorical-{'hard' if h else 'soft'}", categorical_elbo_row(h)) for h in (False, True)]
        + [(f"iwae-{e}", iwae_row(e)) for e in fastvae.arch.IWAE_ESTIMATORS]
        + [("heads.elbo_terms-mc", heads_row("elbo_terms", "mc")),
           ("heads.iwae_bound-dreg", heads_row("iwae_bound", "dreg"))])


@pytest.mark.parametrize("build", [pytest.param(b, id=i) for i, b in ROWS])
def test_compiled_equals_eager(build):
    fn, args, params = build()
    value = fn(*args)
    grads = torch.autograd.grad(value, params)
    compiled = torch.compile(fn, fullgraph=True)
    value_c = compiled(*args)
    grads_c = torch.autograd.grad(value_c, params)
    torch.testing.assert_close(value_c, value, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_c, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# -- the samplers drawing their own seed inside the graph --------------------------------------------------------
def test_seeded_gumbel_softmax_compiles_and_matches_eager():
    logits = torch.tensor([[math.log(0.1), math.log(0.2), math.log(0.7)]], dtype=F64).expand(20000, 3).contiguous()
    logits.requires_grad_()
    w = torch.tensor([0.0, 1.0, 2.0], dtype=F64)

    def fn(logits):
        soft = fastvae.gumbel_softmax(logits, 0.5)
        hard = fastvae.gumbel_softmax(logits, 0.5, hard=True)
        return soft, hard, (soft * w).pow(2).sum()

    compiled = torch.compile(fn, fullgraph=True)
    torch.manual_seed(1)
    soft, hard, loss = fn(logits)
    (grad,) = torch.autograd.grad(loss, logits)
    torch.manual_seed(1)
    soft_c, hard_c, loss_c = compiled(logits)
    (grad_c,) = torch.autograd.grad(loss_c, logits)
    torch.testing.assert_close(soft_c, soft, rtol=0, atol=0)
    torch.testing.assert_close(hard_c, hard, rtol=0, atol=0)
    torch.testing.assert_close(grad_c, grad, rtol=1e-12, atol=1e-12)
    # the seed is drawn per call: the generator state advances inside the graph
    assert not torch.equal(compiled(logits)[0], soft_c)
    # hard samples are Categorical(0.1, 0.2, 0.7) draws (Gumbel-max)
    counts = hard_c.sum(0).detach().numpy()
    assert scipy.stats.chisquare(counts, [2000, 4000, 14000]).pvalue > 1e-3


def test_seeded_exponential_and_categorical_compile_and_match_eager():
    rate = torch.tensor([0.5, 2.0], dtype=F64, requires_grad=True)
    probs = torch.tensor([0.25, 0.5, 0.25], dtype=F64)

    def fn(rate):
        z = fastvae.exponential_rsample(rate, (20000,))
        return z, fastvae.categorical_rsample(probs.log(), 0.1, (20000,)), z.sum()

    compiled = torch.compile(fn, fullgraph=True)
    torch.manual_seed(2)
    z, c, total = fn(rate)
    (grad,) = torch.autograd.grad(total, rate)
    torch.manual_seed(2)
    z_c, c_c, total_c = compiled(rate)
    (grad_c,) = torch.autograd.grad(total_c, rate)
    torch.testing.assert_close(z_c, z, rtol=0, atol=0)
    assert torch.equal(c_c, c)
    torch.testing.assert_close(grad_c, grad, rtol=1e-12, atol=1e-12)
    for j, r in enumerate(rate.tolist()):
        assert scipy.stats.kstest(z_c[:, j].detach().numpy(), "expon", args=(0, 1 / r)).pvalue > 1e-3
    counts = torch.bincount(c_c, minlength=3).numpy()
    assert scipy.stats.chisquare(counts, [5000, 10000, 5000]).pvalue > 1e-3
