"""fastvae.heads' objectives of Rainforth et al. 2018 ("Tighter variational bounds are not necessarily better",
ICML) beside the IWAE bound: miwae_bound, ciwae_bound and piwae_bounds (issue 22). On a tiny float64
encoder and decoder, their values, weights and every parameter gradient (with the DReG hook of docs/heads.md)
agree with references written from the papers' equations (tests/reference/heads.py); their ends are the
existing heads bit for bit; gradcheck; meta shapes; bad input."""
import math

import pytest
import torch
from torch import nn

import fastvae
from reference import heads as ref
from fastvae import heads

F64 = torch.float64
TOL = dict(atol=1e-9, rtol=1e-9)
FAMILIES, FAMILY_IDS = ref.FAMILIES, ref.FAMILY_IDS
ESTIMATORS = heads.IWAE_ESTIMATORS
# (M, K, B): one group, one sample per group, both, one image
SHAPES = [(1, 4, 3), (3, 1, 2), (2, 3, 4), (1, 1, 2), (4, 2, 1)]
SHAPE_IDS = [f"M{m}-K{k}-B{b}" for m, k, b in SHAPES]
BETAS = [0.0, 0.3, 1.0]
D, Z, H = 5, 3, 4


class Tiny:
    """A float64 encoder x -> (mu, sigma = softplus(.) + 0.2) and decoder z -> tanh layer -> decoder_out,
    with seeded weights (the global random state is left as it was)."""

    def __init__(self, family, seed):
        width = 2 * D if family[2] == "predicted" else D
        with torch.random.fork_rng(devices=[]):
            self.encoder = nn.Linear(D, 2 * Z).double()
            self.decoder = nn.Sequential(nn.Linear(Z, H), nn.Tanh(), nn.Linear(H, width)).double()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.encoder_params() + self.decoder_params():
                p.copy_(0.6 * torch.randn(p.shape, generator=g, dtype=F64))

    def encoder_params(self):
        return list(self.encoder.parameters())

    def decoder_params(self):
        return list(self.decoder.parameters())

    def sample(self, x, eps):
        h = self.encoder(x)
        mu, sigma = h[:, :Z], nn.functional.softplus(h[:, Z:]) + 0.2
        return mu, sigma, mu + sigma * eps


def setup(family, M, K, B, seed=0):
    g = torch.Generator().manual_seed(seed + 100)
    x = ref.data(family[0], (B, D), g)
    eps = torch.randn(M * K, B, Z, generator=g, dtype=F64)
    upstream = torch.linspace(0.5, 1.5, B, dtype=F64)  # a different weight per image
    return Tiny(family, seed), x, eps, upstream


def fastvae_side(model, x, eps, upstream, head, estimator):
    """head(x, out, z, mu, sigma) -> (encoder objective, decoder objective, weights) [B], [B], [L, B]. One
    backward of the objective when both are one tensor (miwae, ciwae), else PIWAE's recipe: each objective's
    gradient with respect to its own network's parameters. DReG: the hook of docs/heads.md."""
    mu, sigma, z = model.sample(x, eps)
    z_dec = z.view_as(z)
    out = model.decoder(z_dec)
    enc_obj, dec_obj, weights = head(x, out, z, mu, sigma)
    if estimator == "dreg":
        z_dec.register_hook(lambda g: g * weights.unsqueeze(-1))
    enc_p, dec_p = model.encoder_params(), model.decoder_params()
    if enc_obj is dec_obj:
        grads = torch.autograd.grad((upstream * enc_obj).sum(), enc_p + dec_p)
        g_enc, g_dec = grads[:len(enc_p)], grads[len(enc_p):]
    else:
        g_enc = torch.autograd.grad((upstream * enc_obj).sum(), enc_p, retain_graph=True)
        g_dec = torch.autograd.grad((upstream * dec_obj).sum(), dec_p)
    return enc_obj.detach(), dec_obj.detach(), weights, list(g_enc), list(g_dec)


def reference_side(model, x, eps, upstream, family, objective):
    """objective(lw, lw_stop) -> (encoder value, decoder value, encoder surrogate, decoder surrogate, weights):
    the surrogates' autograd gradients with respect to each network's parameters are the estimator's."""
    mu, sigma, z = model.sample(x, eps)
    out = model.decoder(z)
    lw = ref.log_weights(x, out, z, mu, sigma, *family)
    lw_stop = ref.log_weights(x, out, z, mu, sigma, *family, stop=True)
    enc_value, dec_value, enc_sur, dec_sur, weights = objective(lw, lw_stop)
    g_enc = torch.autograd.grad((upstream * enc_sur).sum(), model.encoder_params(), retain_graph=True)
    g_dec = torch.autograd.grad((upstream * dec_sur).sum(), model.decoder_params())
    return enc_value.detach(), dec_value.detach(), weights, list(g_enc), list(g_dec)


def surrogates(value, estimator, lw, lw_stop, dreg):
    """(encoder surrogate, decoder surrogate) of an objective ``value(lw)`` whose DReG surrogate is
    ``dreg(lw_stop)``: reparam, the objective; stl, the objective with q's parameters held fixed; dreg, DReG for
    the encoder and the objective for the decoder (whose gradient is the same under every estimator)."""
    if estimator == "reparam":
        return value(lw), value(lw)
    if estimator == "stl":
        return value(lw_stop), value(lw_stop)
    return dreg(lw_stop), value(lw)


def compare(got, want, *, two_values):
    enc, dec, weights, g_enc, g_dec = got
    torch.testing.assert_close(enc, want[0], **TOL)
    if two_values:
        torch.testing.assert_close(dec, want[1], **TOL)
    torch.testing.assert_close(weights, want[2], **TOL)
    torch.testing.assert_close(g_enc, want[3], **TOL)
    torch.testing.assert_close(g_dec, want[4], **TOL)
    assert all(g.abs().sum() > 0 for g in g_enc + g_dec)  # every parameter is reached


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_miwae_matches_the_reference(family, estimator, shape):
    M, K, B = shape
    model, x, eps, u = setup(family, M, K, B, seed=1)
    lik, gs, scale = family

    def head(*a):
        bound, weights = heads.miwae_bound(*a, groups=M, likelihood=lik, gaussian_sigma=gs, gaussian_scale=scale,
                                           estimator=estimator)
        return bound, bound, weights

    def objective(lw, lw_stop):
        value = ref.miwae(lw, M)
        enc, dec = surrogates(lambda t: ref.miwae(t, M), estimator, lw, lw_stop, lambda t: ref.dreg_miwae(t, M))
        return value, value, enc, dec, ref.group_weights(lw, M)

    got = fastvae_side(model, x, eps, u, head, estimator)
    compare(got, reference_side(model, x, eps, u, family, objective), two_values=False)
    assert got[2].shape == (M * K, B)
    torch.testing.assert_close(got[2].view(M, K, B).sum(1), torch.ones(M, B, dtype=F64), **TOL)


def ciwae_multipliers(lw, beta):
    """The DReG hook's multipliers for CIWAE from the gradients' coefficients on the decoder path: the head's
    c_k = beta/K + (1 - beta) w~_k, DReG's p_k = beta/K + (1 - beta) w~_k^2; r = p / c (w~ for beta = 0)."""
    w = torch.softmax(lw, 0).detach()
    if beta == 0:
        return w
    K = lw.shape[0]
    return (beta / K + (1 - beta) * w ** 2) / (beta / K + (1 - beta) * w)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_ciwae_matches_the_reference(family, estimator, shape, beta):
    M, K, B = shape
    L = M * K  # CIWAE takes all the samples as one group of K = L
    model, x, eps, u = setup(family, 1, L, B, seed=2)
    lik, gs, scale = family

    def head(*a):
        bound, weights = heads.ciwae_bound(*a, beta=beta, likelihood=lik, gaussian_sigma=gs, gaussian_scale=scale,
                                           estimator=estimator)
        return bound, bound, weights

    def objective(lw, lw_stop):
        value = ref.ciwae(lw, beta)
        enc, dec = surrogates(lambda t: ref.ciwae(t, beta), estimator, lw, lw_stop,
                              lambda t: ref.dreg_ciwae(t, beta))
        weights = ciwae_multipliers(lw, beta) if estimator == "dreg" else torch.softmax(lw, 0).detach()
        return value, value, enc, dec, weights

    compare(fastvae_side(model, x, eps, u, head, estimator), reference_side(model, x, eps, u, family, objective),
            two_values=False)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_piwae_matches_the_reference(family, estimator, shape):
    """The encoder's parameters get MIWAE(M, K)'s gradient (with the estimator), the decoder's IWAE(M*K)'s."""
    M, K, B = shape
    model, x, eps, u = setup(family, M, K, B, seed=3)
    lik, gs, scale = family

    def head(*a):
        b = heads.piwae_bounds(*a, groups=M, likelihood=lik, gaussian_sigma=gs, gaussian_scale=scale,
                               estimator=estimator)
        assert isinstance(b, fastvae.PIWAEBounds)
        return b.encoder_bound, b.decoder_bound, b.weights

    def objective(lw, lw_stop):
        enc, _ = surrogates(lambda t: ref.miwae(t, M), estimator, lw, lw_stop, lambda t: ref.dreg_miwae(t, M))
        dec = ref.iwae(lw)
        return ref.miwae(lw, M), dec, enc, dec, ref.group_weights(lw, M)

    compare(fastvae_side(model, x, eps, u, head, estimator), reference_side(model, x, eps, u, family, objective),
            two_values=True)


# -- the ends: the existing heads, bit for bit ------------------------------------------------------------------

def make_inputs(family, L, B=3, D=4, Z=2, seed=0):
    likelihood, _, scale = family
    g = torch.Generator().manual_seed(seed)
    x = ref.data(likelihood, (B, D), g)
    out = torch.randn(L, B, 2 * D if scale == "predicted" else D, generator=g, dtype=F64)
    mu = torch.randn(B, Z, generator=g, dtype=F64)
    sigma = torch.rand(B, Z, generator=g, dtype=F64) + 0.3
    z = mu + sigma * torch.randn(L, B, Z, generator=g, dtype=F64)
    return x, out, z, mu, sigma


def values_and_grads(fn, x, out, z, mu, sigma):
    """fn(x, out, z, mu, sigma) -> (value [B], weights); the value, the weights and the gradients of
    sum(u * value) with respect to (out, z, mu, sigma) (zeros where none)."""
    leaves = [t.detach().clone().requires_grad_() for t in (out, z, mu, sigma)]
    value, weights = fn(x, *leaves)
    u = torch.linspace(0.5, 1.5, x.shape[0], dtype=F64)
    grads = torch.autograd.grad((u * value).sum(), leaves, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, leaves)]
    return [value.detach(), weights, *grads]


def assert_equal(a, b):
    assert len(a) == len(b)
    for s, t in zip(a, b):
        assert torch.equal(s, t)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_miwae_of_one_group_is_iwae_bound(family, estimator):
    lik, gs, scale = family
    kw = dict(likelihood=lik, gaussian_sigma=gs, gaussian_scale=scale, estimator=estimator)
    inputs = make_inputs(family, L=4, seed=4)
    assert_equal(values_and_grads(lambda *a: heads.miwae_bound(*a, groups=1, **kw), *inputs),
                 values_and_grads(lambda *a: heads.iwae_bound(*a, **kw), *inputs))


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_ciwae_ends_are_the_elbo_and_iwae_heads(family, estimator):
    """beta = 1: elbo_terms' ELBO (its "mc" estimator, "stl" for stl and dreg), the IWAE weights (for dreg the
    multipliers, all 1); beta = 0: iwae_bound."""
    lik, gs, scale = family
    kw = dict(likelihood=lik, gaussian_sigma=gs, gaussian_scale=scale)
    inputs = make_inputs(family, L=4, seed=5)
    iwae = values_and_grads(lambda *a: heads.iwae_bound(*a, estimator=estimator, **kw), *inputs)
    assert_equal(values_and_grads(lambda *a: heads.ciwae_bound(*a, beta=0.0, estimator=estimator, **kw), *inputs),
                 iwae)
    elbo_estimator = "mc" if estimator == "reparam" else "stl"
    elbo = values_and_grads(lambda *a: (heads.elbo_terms(*a, estimator=elbo_estimator, **kw).elbo, None), *inputs)
    got = values_and_grads(lambda *a: heads.ciwae_bound(*a, beta=1, estimator=estimator, **kw), *inputs)
    assert_equal(got[:1] + got[2:], elbo[:1] + elbo[2:])
    assert torch.equal(got[1], torch.ones_like(iwae[1]) if estimator == "dreg" else iwae[1])


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_piwae_is_miwae_and_iwae(family, estimator, groups):
    lik, gs, scale = family
    kw = dict(likelihood=lik, gaussian_sigma=gs, gaussian_scale=scale)
    inputs = make_inputs(family, L=4, seed=6)
    enc = values_and_grads(lambda *a: heads.miwae_bound(*a, groups=groups, estimator=estimator, **kw), *inputs)
    dec = values_and_grads(lambda *a: heads.iwae_bound(*a, estimator="reparam", **kw), *inputs)

    def part(i):
        def fn(*a):
            b = heads.piwae_bounds(*a, groups=groups, estimator=estimator, **kw)
            return b[i], b.weights
        return fn

    assert_equal(values_and_grads(part(0), *inputs), enc)
    got = values_and_grads(part(1), *inputs)  # its weights are the encoder bound's (checked above)
    assert_equal(got[:1] + got[2:], dec[:1] + dec[2:])


# -- gradcheck, meta ----------------------------------------------------------------------------------------------

FUNCTIONS = {
    "miwae_bound": lambda *a, **kw: heads.miwae_bound(*a, groups=2, **kw)[0],
    "ciwae_bound": lambda *a, **kw: heads.ciwae_bound(*a, beta=0.3, **kw)[0],
    "piwae_bounds": lambda *a, **kw: heads.piwae_bounds(*a, groups=2, **kw)[:2],
}


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_gradcheck(family, name):
    """The reparam estimator is the gradient of the value (stl and dreg are other gradients on purpose)."""
    lik, gs, scale = family
    x, *inputs = make_inputs(family, L=4, B=2, D=3, Z=2, seed=7)
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    fn = FUNCTIONS[name]
    assert torch.autograd.gradcheck(lambda *a: fn(x, *a, likelihood=lik, gaussian_sigma=gs, gaussian_scale=scale),
                                    leaves)


def test_meta_shapes():
    x, out, z, mu, sigma = (t.to("meta") for t in make_inputs(FAMILIES[0], L=6, B=3))
    bound, weights = heads.miwae_bound(x, out, z, mu, sigma, groups=2, estimator="dreg")
    assert (tuple(bound.shape), tuple(weights.shape), bound.device.type) == ((3,), (6, 3), "meta")
    bound, weights = heads.ciwae_bound(x, out, z, mu, sigma, beta=0.5, estimator="dreg")
    assert (tuple(bound.shape), tuple(weights.shape)) == ((3,), (6, 3))
    b = heads.piwae_bounds(x, out, z, mu, sigma, groups=3)
    assert [tuple(t.shape) for t in b] == [(3,), (3,), (6, 3)]


# -- bad input: one message style, "fastvae.heads.<fn>: ..." ---------------------------------------------------------

_x, _out, _z, _mu, _sigma = make_inputs(FAMILIES[0], L=6, B=3)
VALID = {"miwae_bound": dict(groups=2), "ciwae_bound": dict(beta=0.5), "piwae_bounds": dict(groups=3)}
GROUPED = ("miwae_bound", "piwae_bounds")

BAD = []
for _fn in GROUPED:
    BAD += [
        (_fn, dict(groups=0), ValueError, "groups must be an integer >= 1, got 0"),
        (_fn, dict(groups=-1), ValueError, "groups must be an integer >= 1, got -1"),
        (_fn, dict(groups=1.5), TypeError, "groups must be an integer, got 1.5"),
        (_fn, dict(groups=2.0), TypeError, "groups must be an integer, got 2.0"),
        (_fn, dict(groups=True), TypeError, "groups must be an integer, got True"),
        (_fn, dict(groups="2"), TypeError, "groups must be an integer, got '2'"),
        (_fn, dict(groups=None), TypeError, "groups must be an integer, got None"),
        (_fn, dict(groups=4), ValueError, "z holds 6 samples per image, which groups = 4 does not divide"),
        (_fn, dict(groups=12), ValueError, "z holds 6 samples per image, which groups = 12 does not divide"),
    ]
BAD += [
    ("ciwae_bound", dict(beta=-0.1), ValueError, "beta must be >= 0.0, got -0.1"),
    ("ciwae_bound", dict(beta=1.5), ValueError, "beta must be <= 1.0, got 1.5"),
    ("ciwae_bound", dict(beta=2), ValueError, "beta must be <= 1.0, got 2.0"),
    ("ciwae_bound", dict(beta=float("nan")), ValueError, "beta must be a finite number, got nan"),
    ("ciwae_bound", dict(beta=float("inf")), ValueError, "beta must be a finite number, got inf"),
    ("ciwae_bound", dict(beta=True), TypeError, "beta must be a real number, got True"),
    ("ciwae_bound", dict(beta="0.5"), TypeError, "beta must be a real number, got '0.5'"),
    ("ciwae_bound", dict(beta=None), TypeError, "beta must be a real number, got None"),
]
for _fn in VALID:  # the checks inherited from the heads
    BAD += [
        (_fn, dict(estimator="mc"), ValueError, "estimator must be one of ['reparam', 'stl', 'dreg'], got 'mc'"),
        (_fn, dict(estimator=None), TypeError, "estimator must be one of ['reparam', 'stl', 'dreg']"),
        (_fn, dict(likelihood="poisson"), ValueError, "likelihood must be one of"),
        (_fn, dict(gaussian_scale="predicted"), ValueError, "needs likelihood 'gaussian'"),
        (_fn, dict(likelihood="gaussian", gaussian_sigma=0.0), ValueError, "gaussian_sigma must be > 0"),
        (_fn, dict(x=_x.numpy()), TypeError, "x must be a torch.Tensor"),
        (_fn, dict(x=_x.long()), TypeError, "x must have dtype"),
        (_fn, dict(mu=_mu.float()), TypeError, "mu must have x's dtype"),
        (_fn, dict(z=_z[0]), ValueError, "z must have 3 dimensions"),
        (_fn, dict(decoder_out=_out[:, :, :-1]), ValueError, "decoder_out must have shape"),
        (_fn, dict(z=_z[:3]), ValueError, "z must have shape [6, 3, 2]"),
        (_fn, dict(sigma=_sigma[:, :1]), ValueError, "mu and sigma must have shape"),
        (_fn, dict(x=_x.to("meta")), ValueError, "tensors must share one device"),
        (_fn, dict(x=_x[:0]), ValueError, "empty inputs"),
        (_fn, dict(x=_x.clone().requires_grad_()), ValueError, "x must not require a gradient"),
    ]


@pytest.mark.parametrize("fn,over,exc,fragment", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input(fn, over, exc, fragment):
    args = dict(x=_x, decoder_out=_out, z=_z, mu=_mu, sigma=_sigma, **VALID[fn])
    args.update(over)
    with pytest.raises(Exception) as info:
        getattr(heads, fn)(**args)
    assert type(info.value) is exc, f"expected {exc.__name__}, got {type(info.value).__name__}: {info.value}"
    assert str(info.value).startswith(f"fastvae.heads.{fn}: "), str(info.value)
    assert fragment in str(info.value), str(info.value)


def test_valid_arguments_of_the_bad_input_table_pass():
    """The table's base call works, so each row fails for its own argument alone."""
    for fn, kw in VALID.items():
        value = getattr(heads, fn)(_x, _out, _z, _mu, _sigma, **kw)[0]
        assert value.shape == (3,) and torch.isfinite(value).all()
    assert math.isfinite(heads.ciwae_bound(_x, _out, _z, _mu, _sigma, beta=1)[0].sum().item())

