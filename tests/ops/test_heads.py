"""fastvae.heads (issue 11): the fused CPU kernels, the device-generic ATen path (reached on the CPU through
the private _generic_* ops, bound to the same C++ functions the CompositeExplicitAutograd key serves) and the
pure-PyTorch reference (tests/reference/heads.py) agree in float64, values and gradients; gradcheck; meta
shapes; the DReG hook recipe; bad input."""
import functools
import math

import pytest
import torch

from reference import heads as ref
from fastvae import heads

ops = torch.ops.fastvae
F64 = torch.float64
TOL = dict(atol=1e-9, rtol=1e-9)
# (likelihood, gaussian_sigma, gaussian_scale): every row of the reference's likelihood table
FAMILIES, FAMILY_IDS = ref.FAMILIES, ref.FAMILY_IDS


def make_inputs(family, L=3, B=4, D=6, Z=2, seed=0, dtype=F64):
    likelihood, _, scale = family
    g = torch.Generator().manual_seed(seed)
    x = ref.data(likelihood, (B, D), g, dtype)
    width = 2 * D if scale == "predicted" else D
    out = torch.randn(L, B, width, generator=g, dtype=dtype)
    x, out = ref.LIKELIHOODS[likelihood].edge(x, out)  # where the formula changes branch
    mu = torch.randn(B, Z, generator=g, dtype=dtype)
    sigma = torch.rand(B, Z, generator=g, dtype=dtype) + 0.3
    z = mu + sigma * torch.randn(L, B, Z, generator=g, dtype=dtype)
    return x, out, z, mu, sigma


def leaves(*ts):
    return [t.detach().clone().requires_grad_() for t in ts]


def grads_of(fn, x, out, z, mu, sigma, upstream):
    """Values of fn and the gradients of sum(upstream[i] * value[i]) w.r.t. (out, z, mu, sigma)."""
    out, z, mu, sigma = leaves(out, z, mu, sigma)
    values = fn(x, out, z, mu, sigma)
    loss = sum((u * v).sum() for u, v in zip(upstream, values))
    return [v.detach() for v in values], torch.autograd.grad(loss, (out, z, mu, sigma), allow_unused=True)


def zeros_for_none(gs, like):
    return [torch.zeros_like(t) if g is None else g for g, t in zip(gs, like)]


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
@pytest.mark.parametrize("estimator", heads.ELBO_ESTIMATORS)
def test_elbo_terms_three_ways_agree(family, estimator):
    x, out, z, mu, sigma = make_inputs(family)
    lik, gs, scale = family
    upstream = [torch.linspace(0.5, 1.5, x.shape[0], dtype=F64), torch.linspace(-1, 2, x.shape[0], dtype=F64),
                torch.linspace(0.3, -0.7, x.shape[0], dtype=F64)]
    fused = grads_of(lambda *a: heads.elbo_terms(*a, likelihood=lik, gaussian_sigma=gs, gaussian_scale=scale,
                                                 estimator=estimator), x, out, z, mu, sigma, upstream)
    generic = grads_of(lambda *a: ops._generic_elbo_terms(*a, lik, gs, scale, estimator), x, out, z, mu, sigma,
                       upstream)
    reference = grads_of(lambda *a: ref.elbo_terms(*a, lik, gs, scale, estimator), x, out, z, mu, sigma, upstream)
    like = (out, z, mu, sigma)
    for other in (generic, reference):
        torch.testing.assert_close(fused[0], other[0], **TOL)
        torch.testing.assert_close(zeros_for_none(fused[1], like), zeros_for_none(other[1], like), **TOL)


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
@pytest.mark.parametrize("estimator", heads.IWAE_ESTIMATORS)
def test_iwae_bound_three_ways_agree(family, estimator):
    x, out, z, mu, sigma = make_inputs(family, L=5)
    lik, gs, scale = family
    g = torch.linspace(0.5, 1.5, x.shape[0], dtype=F64)

    def run(fn):
        o, zz, m, s = leaves(out, z, mu, sigma)
        bound, weights, surrogate = fn(x, o, zz, m, s)
        grads = torch.autograd.grad((g * surrogate).sum(), (o, zz, m, s), allow_unused=True)
        return bound.detach(), weights, zeros_for_none(grads, (out, z, mu, sigma))

    fused = run(lambda *a: (*heads.iwae_bound(*a, likelihood=lik, gaussian_sigma=gs, gaussian_scale=scale,
                                              estimator=estimator), heads.iwae_bound(
        *a, likelihood=lik, gaussian_sigma=gs, gaussian_scale=scale, estimator=estimator)[0]))
    generic = run(lambda *a: (*ops._generic_iwae_bound(*a, lik, gs, scale, estimator),
                              ops._generic_iwae_bound(*a, lik, gs, scale, estimator)[0]))
    reference = run(lambda *a: ref.iwae_bound(*a, lik, gs, scale, estimator))
    for other in (generic, reference):
        torch.testing.assert_close(fused[0], other[0], **TOL)
        torch.testing.assert_close(fused[1], other[1], **TOL)
        torch.testing.assert_close(fused[2], other[2], **TOL)
    torch.testing.assert_close(fused[1].sum(0), torch.ones_like(g), **TOL)


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
@pytest.mark.parametrize("path", ["fused", "generic"])
def test_gradcheck(family, path):
    x, out, z, mu, sigma = make_inputs(family, L=2, B=2, D=3, Z=2, seed=3)
    lik, gs, scale = family
    terms = ops.elbo_terms if path == "fused" else ops._generic_elbo_terms
    bound = ops.iwae_bound if path == "fused" else ops._generic_iwae_bound
    inputs = leaves(out, z, mu, sigma)
    for est in heads.ELBO_ESTIMATORS:
        if est == "stl":  # a different gradient from the value's on purpose; checked against the reference
            continue
        assert torch.autograd.gradcheck(lambda *a: terms(x, *a, lik, gs, scale, est), inputs)
    assert torch.autograd.gradcheck(lambda *a: bound(x, *a, lik, gs, scale, "reparam")[0], inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_fused_and_generic_agree_in_both_dtypes(family, dtype):
    x, out, z, mu, sigma = make_inputs(family, L=2, B=8, D=50, Z=3, seed=5, dtype=dtype)
    lik, gs, scale = family
    tol = TOL if dtype == F64 else dict(atol=1e-4, rtol=1e-4)
    for est in heads.ELBO_ESTIMATORS:
        a = ops.elbo_terms(x, out, z, mu, sigma, lik, gs, scale, est)
        b = ops._generic_elbo_terms(x, out, z, mu, sigma, lik, gs, scale, est)
        torch.testing.assert_close(a, b, **tol)
        assert a[0].dtype == dtype
    w = torch.rand(x.shape[0], dtype=dtype)
    fused_bound, weights = ops.iwae_bound(x, out, z, mu, sigma, lik, gs, scale, "reparam")
    generic_bound, generic_weights = ops._generic_iwae_bound(x, out, z, mu, sigma, lik, gs, scale, "reparam")
    torch.testing.assert_close((fused_bound, weights), (generic_bound, generic_weights), **tol)
    for est in heads.IWAE_ESTIMATORS:
        torch.testing.assert_close(ops._iwae_bound_backward(w, weights, x, out, z, mu, sigma, True, lik, gs, scale, est),
                                   ops._generic_iwae_bound_backward(w, weights, x, out, z, mu, sigma, True, lik, gs,
                                                                    scale, est), **tol)


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_meta_shapes(family):
    x, out, z, mu, sigma = (t.to("meta") for t in make_inputs(family, L=3, B=4, D=6, Z=2))
    lik, gs, scale = family
    terms = heads.elbo_terms(x, out, z, mu, sigma, likelihood=lik, gaussian_sigma=gs, gaussian_scale=scale)
    assert [tuple(t.shape) for t in terms] == [(4,)] * 3 and terms.elbo.device.type == "meta"
    bound, weights = heads.iwae_bound(x, out, z, mu, sigma, likelihood=lik, gaussian_sigma=gs, gaussian_scale=scale)
    assert tuple(bound.shape) == (4,) and tuple(weights.shape) == (3, 4)
    g = torch.empty(4, device="meta", dtype=F64)
    for op in (ops._elbo_terms_backward, ops._generic_elbo_terms_backward):
        shapes = [tuple(t.shape) for t in op(g, g, x, out, z, mu, sigma, True, lik, gs, scale, "mc")]
        assert shapes == [tuple(out.shape), (3, 4, 2), (4, 2), (4, 2)]
    for op in (ops._iwae_bound_backward, ops._generic_iwae_bound_backward):
        shapes = [tuple(t.shape) for t in op(g, weights, x, out, z, mu, sigma, True, lik, gs, scale, "dreg")]
        assert shapes == [tuple(out.shape), (3, 4, 2), (4, 2), (4, 2)]


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
@pytest.mark.parametrize("prefix", ["_", "_generic_"])
def test_forward_decoder_grad_is_the_backward_gradient(family, prefix):
    """The private forwards' decoder_grad (written in the value's pass) is d objective / d decoder_out: the
    backward op's recomputation with a unit upstream gradient, to the bit; without the flag it is empty."""
    x, out, z, mu, sigma = make_inputs(family, L=3, B=4, D=6, Z=2, seed=11)
    lik, gs, scale = family
    one = torch.ones(4, dtype=F64)
    fwd, bwd = getattr(ops, prefix + "elbo_terms_forward"), getattr(ops, prefix + "elbo_terms_backward")
    dg = fwd(x, out, z, mu, sigma, lik, gs, scale, "mc", True)[3]
    assert torch.equal(dg, bwd(one, one, x, out, z, mu, sigma, True, lik, gs, scale, "mc")[0])
    assert fwd(x, out, z, mu, sigma, lik, gs, scale, "mc", False)[3].numel() == 0
    assert bwd(one, one, x, out, z, mu, sigma, False, lik, gs, scale, "mc")[0].numel() == 0
    fwd, bwd = getattr(ops, prefix + "iwae_bound_forward"), getattr(ops, prefix + "iwae_bound_backward")
    _, weights, dg = fwd(x, out, z, mu, sigma, lik, gs, scale, "reparam", True)
    assert torch.equal(dg, bwd(one, weights, x, out, z, mu, sigma, True, lik, gs, scale, "reparam")[0])
    assert fwd(x, out, z, mu, sigma, lik, gs, scale, "reparam", False)[2].numel() == 0


@pytest.mark.parametrize("path", ["fused", "generic"])
def test_backward_twice_gives_the_same_gradient(path):
    """The first backward hands on the forward's gradient buffer (scaled in place); a second one through a
    retained graph recomputes it, and both give the same bits, so .grad doubles exactly."""
    family = FAMILIES[1]
    x, out, z, mu, sigma = make_inputs(family, L=2, B=4, D=6, Z=2, seed=12)
    lik, gs, scale = family
    prefix = "" if path == "fused" else "_generic_"
    for name, est in (("elbo_terms", "mc"), ("iwae_bound", "reparam")):
        inputs = leaves(out, z, mu, sigma)
        value = getattr(ops, prefix + name)(x, *inputs, lik, gs, scale, est)[0]
        w = torch.linspace(-1.0, 2.0, 4, dtype=F64)
        (value * w).sum().backward(retain_graph=True)
        first = [t.grad.clone() for t in inputs]
        (value * w).sum().backward()
        for a, t in zip(first, inputs):
            assert torch.equal(t.grad, 2 * a)


def test_dreg_hook_gives_the_reference_encoder_gradient():
    """With the hook of the docstring on the decoder's input, the encoder gradient of a tiny model equals the
    DReG surrogate's (Tucker et al. 2019): sum_k w~_k^2 d log w_k / dz dz/dphi, q's parameters held fixed."""
    torch.manual_seed(0)
    B, D, Z, K = 5, 8, 3, 6
    enc, dec = torch.nn.Linear(D, 2 * Z).double(), torch.nn.Sequential(torch.nn.Linear(Z, 7), torch.nn.Tanh(),
                                                                       torch.nn.Linear(7, D)).double()
    x = (torch.rand(B, D) < 0.5).double()
    eps = torch.randn(K, B, Z, dtype=F64)

    def posterior():
        h = enc(x)
        return h[:, :Z], torch.nn.functional.softplus(h[:, Z:]) + 1e-3

    mu, sigma = posterior()
    z = mu + sigma * eps
    z_dec = z.view_as(z)
    out = dec(z_dec)
    bound, weights = heads.iwae_bound(x, out, z, mu, sigma, estimator="dreg")
    z_dec.register_hook(lambda g: g * weights.unsqueeze(-1))
    bound.sum().backward()
    got = [p.grad.clone() for p in enc.parameters()]
    got_dec = [p.grad.clone() for p in dec.parameters()]
    enc.zero_grad()
    dec.zero_grad()

    mu, sigma = posterior()
    z = mu + sigma * eps
    prior = torch.distributions.Normal(0.0, 1.0)
    lw = (ref.log_lik(x, dec(z), "bernoulli") + prior.log_prob(z).sum(-1)
          - torch.distributions.Normal(mu.detach(), sigma.detach()).log_prob(z).sum(-1))
    w = torch.softmax(lw, 0).detach()
    want = torch.autograd.grad((w ** 2 * lw).sum(), list(enc.parameters()), retain_graph=True)
    want_dec = torch.autograd.grad(torch.logsumexp(lw, 0).sum(), list(dec.parameters()))
    torch.testing.assert_close(got, list(want), **TOL)
    torch.testing.assert_close(got_dec, list(want_dec), **TOL)
    assert all(g.abs().sum() > 0 for g in got)


def test_values_match_closed_forms():
    """One number from the definitions: L = 1, logits 0 give log p(x) = -D log 2 for binary x."""
    x = torch.tensor([[1.0, 0.0, 1.0]], dtype=F64)
    out = torch.zeros(1, 1, 3, dtype=F64)
    mu, sigma = torch.zeros(1, 2, dtype=F64), torch.ones(1, 2, dtype=F64)
    terms = heads.elbo_terms(x, out, mu.unsqueeze(0), mu, sigma)
    torch.testing.assert_close(terms.rec, torch.tensor([-3 * math.log(2)], dtype=F64), **TOL)
    torch.testing.assert_close(terms.kl, torch.zeros(1, dtype=F64), **TOL)


def _bad(**over):
    x, out, z, mu, sigma = make_inputs(FAMILIES[0])
    args = dict(x=x, decoder_out=out, z=z, mu=mu, sigma=sigma)
    kw = {k: over.pop(k) for k in list(over) if k in ("likelihood", "gaussian_sigma", "gaussian_scale", "estimator")}
    args.update(over)
    return args, kw


def _set(t, index, value):
    t = t.clone()
    t.view(-1)[index] = value
    return t


def _nan(t):
    return _set(t, 0, float("nan"))


_x, _out, _z, _mu, _sigma = make_inputs(FAMILIES[0])
BAD = [
    (_bad(likelihood="poisson"), ValueError, "likelihood must be one of"),
    (_bad(likelihood=3), TypeError, "likelihood must be one of"),
    (_bad(estimator="dreg"), ValueError, "estimator must be one of ['analytic', 'mc', 'stl']"),
    (_bad(gaussian_scale="learned"), ValueError, "gaussian_scale must be one of"),
    (_bad(gaussian_scale="predicted"), ValueError, "needs likelihood 'gaussian'"),
    (_bad(likelihood="gaussian", gaussian_sigma=0.0), ValueError, "gaussian_sigma must be > 0"),
    (_bad(likelihood="gaussian", gaussian_sigma=-1), ValueError, "gaussian_sigma must be > 0"),
    (_bad(likelihood="gaussian", gaussian_sigma="1"), TypeError, "gaussian_sigma must be a real number"),
    (_bad(x=_x.numpy()), TypeError, "x must be a torch.Tensor"),
    (_bad(x=_x.long()), TypeError, "x must have dtype"),
    (_bad(mu=_mu.float()), TypeError, "mu must have x's dtype"),
    (_bad(x=_x[0]), ValueError, "x must have 2 dimensions"),
    (_bad(decoder_out=_out[0]), ValueError, "decoder_out must have 3 dimensions"),
    (_bad(decoder_out=_out[:, :, :-1]), ValueError, "decoder_out must have shape"),
    (_bad(z=_z[:2]), ValueError, "z must have shape"),
    (_bad(sigma=_sigma[:, :1]), ValueError, "mu and sigma must have shape"),
    (_bad(sigma=-_sigma), ValueError, "sigma must be > 0"),
    (_bad(sigma=_sigma / 0), ValueError, "sigma must be > 0 and finite"),
    (_bad(x=_x.to("meta")), ValueError, "tensors must share one device"),
    (_bad(x=_x + 0.5), ValueError, "x must be binary"),
    (_bad(likelihood="continuous_bernoulli", x=_x + 0.5), ValueError, "x must lie in [0, 1]"),
    (_bad(decoder_out=_nan(_out)), ValueError, "decoder_out contains NaN"),
    (_bad(z=_nan(_z)), ValueError, "z contains NaN"),
    (_bad(x=_x[:0]), ValueError, "empty inputs"),
]


# The heads with the IWAE head's estimators and checks: iwae_bound and the objectives composed from the heads
# (Rainforth et al. 2018; their own arguments: tests/ops/test_iw_objectives.py). make_inputs has L = 3 samples.
IWAE_HEADS = [heads.iwae_bound, functools.partial(heads.miwae_bound, groups=1),
              functools.partial(heads.miwae_bound, groups=3), functools.partial(heads.ciwae_bound, beta=0.5),
              functools.partial(heads.piwae_bounds, groups=3)]


@pytest.mark.parametrize("case,exc,fragment", BAD, ids=[f[2][:30] + str(i) for i, f in enumerate(BAD)])
def test_bad_input(case, exc, fragment):
    args, kw = case
    with pytest.raises(exc, match=None) as info:
        heads.elbo_terms(**args, **kw)
    assert fragment in str(info.value)
    if kw.get("estimator") is None:  # the IWAE heads share the checks
        for head in IWAE_HEADS:
            with pytest.raises(exc) as info:
                head(**args, **kw)
            assert fragment in str(info.value)


CPP_BAD = [  # the ops themselves (no Python checks): TORCH_CHECK errors, never a crash
    ((_x, _out, _z, _mu, _sigma, "poisson", 1.0, "fixed", "mc"), "unknown likelihood 'poisson'; choose one of ["),
    ((_x, _out, _z, _mu, _sigma, "bernoulli", 0.0, "fixed", "mc"), "gaussian_sigma must be a finite number > 0"),
    ((_x, _out, _z, _mu, _sigma, "bernoulli", 1.0, "fixed", "dreg"),
     "unknown estimator 'dreg'; choose one of ['analytic', 'mc', 'stl']"),
    ((_x, _out[:, :, :-1], _z, _mu, _sigma, "bernoulli", 1.0, "fixed", "mc"), "decoder_out must have shape"),
    ((_x, _out, _z[:, :2], _mu, _sigma, "bernoulli", 1.0, "fixed", "mc"), "z must have shape"),
    ((_x, _out.float(), _z, _mu, _sigma, "bernoulli", 1.0, "fixed", "mc"), "decoder_out has dtype"),
    ((_x.int(), _out, _z, _mu, _sigma, "bernoulli", 1.0, "fixed", "mc"), "x must be float32 or float64"),
    ((_x, _out, _z, _mu, _sigma, "gaussian", 1.0, "learnt", "mc"), "unknown gaussian_scale 'learnt'; choose one of"),
    ((_x, _out, _z, _mu, _sigma, "gaussian", 1.0, "learned", "mc"), "gaussian_scale 'learned' is a parameter of"),
]


@pytest.mark.parametrize("op", ["elbo_terms", "_generic_elbo_terms"])
@pytest.mark.parametrize("args,fragment", CPP_BAD)
def test_ops_reject_bad_input(op, args, fragment):
    with pytest.raises(RuntimeError) as info:
        getattr(ops, op)(*args)
    assert "fastvae: elbo_terms: " + fragment in str(info.value)


def test_x_with_gradient_is_refused():
    x, out, z, mu, sigma = make_inputs(FAMILIES[2])
    with pytest.raises(ValueError, match="x must not require a gradient"):
        heads.elbo_terms(x.requires_grad_(), out, z, mu, sigma, likelihood="gaussian")


_xt, _outt, _zt, _mut, _sigmat = make_inputs(FAMILIES[0], L=2, B=3, D=5, Z=3)
CPP_BAD_DATA = [  # data checks of the ops themselves, on both paths: ValueError
    ((_x + 0.5, _out, _z, _mu, _sigma, "bernoulli"), "x must be binary"),
    # one value, in a vector lane and in a row's scalar tail (the fused kernel checks x in its row pass)
    ((_set(_x, 1, 0.5), _out, _z, _mu, _sigma, "bernoulli"), "x must be binary"),
    ((_set(_x, -1, 2.0), _out, _z, _mu, _sigma, "bernoulli"), "x must be binary"),
    ((_set(_x, -1, float("nan")), _out, _z, _mu, _sigma, "bernoulli"), "x contains NaN"),
    ((_x + 0.5, _out, _z, _mu, _sigma, "continuous_bernoulli"), "x must lie in [0, 1]"),
    ((_x, _nan(_out), _z, _mu, _sigma, "gaussian"), "decoder_out contains NaN"),
    ((_x, _out, _z, _nan(_mu), _sigma, "gaussian"), "mu contains NaN"),
    ((_x, _out, _z, _mu, -_sigma, "gaussian"), "sigma must be > 0 and finite everywhere"),
    ((_x, _out, _z, _mu, _set(_sigma, 0, float("inf")), "gaussian"), "sigma must be > 0 and finite everywhere"),
    ((_x, _out, _z, _mu, _nan(_sigma), "gaussian"), "sigma contains NaN"),
    # odd sizes: the fused checks' vector tails (9 latents, 15 pixels), last entry bad
    ((_xt, _outt, _zt, _mut, _set(_sigmat, -1, float("inf")), "bernoulli"), "sigma must be > 0 and finite"),
    ((_xt, _outt, _zt, _mut, _set(_sigmat, -1, float("nan")), "bernoulli"), "sigma contains NaN"),
    ((_xt, _outt, _zt, _set(_mut, -1, float("nan")), _sigmat, "bernoulli"), "mu contains NaN"),
    ((_xt, _outt, _set(_zt, -1, float("nan")), _mut, _sigmat, "bernoulli"), "z contains NaN"),
    ((_set(_xt, -1, 1.5), _outt, _zt, _mut, _sigmat, "continuous_bernoulli"), "x must lie in [0, 1]"),
]


@pytest.mark.parametrize("op", ["elbo_terms", "_generic_elbo_terms", "iwae_bound", "_generic_iwae_bound"])
@pytest.mark.parametrize("args,fragment", CPP_BAD_DATA)
@pytest.mark.parametrize("dtype", [F64, torch.float32])  # the fused checks' vectors hold 4 or 8 lanes
def test_ops_reject_bad_data(op, args, fragment, dtype):
    est = "mc" if "elbo" in op else "dreg"
    args = [a.to(dtype) if torch.is_tensor(a) else a for a in args]
    with pytest.raises(ValueError) as info:
        getattr(ops, op)(*args, 1.0, "fixed", est)
    assert fragment in str(info.value)
