"""Decoder likelihoods of the C++ engine (issue 9 item 1) against torch.distributions references: every row of
the reference table (tests/reference/heads.py) through its torch.distributions density, values and every parameter
gradient in float64 within 1e-9, gradcheck, the IWAE bound, the decoder mean (op likelihood_mean) and a few
training updates; then the continuous Bernoulli (Loaiza-Ganem & Cunningham 2019) in detail: its normaliser on a
grid of logits that crosses the Taylor region near lambda = 1/2, torch.compile and the data checks."""
import math

import pytest
import torch
from torch.distributions import ContinuousBernoulli, Normal, kl_divergence

import fastvae
from reference import heads as ref
from fastvae import _C
from reference.vae import MlpReference

F64 = torch.float64
ops = torch.ops.fastvae
CB = "continuous_bernoulli"
SMALL = {  # the homework heads and conditioning at small sizes
    "logstd-relu": dict(activation="relu", posterior="logstd"),
    "logvar-tanh": dict(activation="tanh", posterior="logvar"),
    "std-cond": dict(activation="relu", posterior="std", mean_activation="sigmoid", scale_activation="sigmoid",
                     cond_dim=3),
    "logvar-leaky": dict(activation="leaky_relu", negative_slope=0.2, posterior="logvar"),
}


def model_of(kind, dtype=F64, logit_scale=1.0, **kw):
    torch.manual_seed(0)
    m = fastvae.VAE(data_dim=9, latent_dim=3, encoder_hidden=(6, 5), decoder_hidden=(5,), dtype=dtype,
                    likelihood=CB, **SMALL[kind], **kw)
    with torch.no_grad():  # logit_scale < 1 puts logits into the Taylor region near 0
        m.decoder[-1].weight.mul_(logit_scale)
        m.decoder[-1].bias.mul_(logit_scale)
    return m


def batch(model, B=5, L=3, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, model.data_dim, generator=g, dtype=dtype)
    x[0, :3] = torch.tensor([0.0, 1.0, 0.5], dtype=dtype)  # the ends of [0, 1] are valid data
    y = torch.randint(0, model.cond_dim, (B,), generator=g) if model.cond_dim else None
    eps = torch.randn(L, B, model.latent_dim, generator=g, dtype=dtype)
    return x, y, eps


def reference_terms(model, x, eps, y, estimator):
    """rec, kl per image with p(x | z) the reference table's density of the model's likelihood around
    decoder(z) (torch.distributions, through the reference VAE of tests/reference/vae.py)."""
    ref_model = MlpReference(model)
    rec, kl = ref_model.elbo_terms(x, eps, y, estimator)
    return ref_model, rec, kl


def test_likelihood_table_is_exposed():
    assert tuple(_C.LIKELIHOODS) == tuple(ref.LIKELIHOODS)  # the C++ table against the tests' own
    assert _C.LIKELIHOOD_DATA == {name: row.data for name, row in ref.LIKELIHOODS.items()}
    assert fastvae.VAE(7, 2, (4,), (4,)).spec().likelihood == "bernoulli"  # today's model is the default


# -- every likelihood of the table --------------------------------------------------------------------------
def table_model(lik, kind="logvar-tanh"):
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=9, latent_dim=3, encoder_hidden=(6, 5), decoder_hidden=(5,), dtype=F64,
                       likelihood=lik, gaussian_sigma=ref.LIKELIHOODS[lik].scale, **SMALL[kind])


def table_batch(model, B=5, L=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = ref.data(model.likelihood, (B, model.data_dim), g)
    y = torch.randint(0, model.cond_dim, (B,), generator=g) if model.cond_dim else None
    return x, y, torch.randn(L, B, model.latent_dim, generator=g, dtype=F64)


@pytest.mark.parametrize("estimator", ["analytic", "mc", "stl"])
@pytest.mark.parametrize("kind", SMALL)
@pytest.mark.parametrize("lik", ref.LIKELIHOODS)
def test_elbo_and_every_gradient_match_the_reference_table(lik, kind, estimator):
    model = table_model(lik, kind)
    x, y, eps = table_batch(model)
    out = fastvae.elbo(model, x, eps=eps, y=y, estimator=estimator)
    ref_model, rec, kl = reference_terms(model, x, eps, y, estimator)
    torch.testing.assert_close(out.rec, rec.detach(), atol=1e-9, rtol=0)
    torch.testing.assert_close(out.kl, kl.detach(), atol=1e-9, rtol=0)
    w = torch.linspace(0.5, 1.5, x.shape[0], dtype=F64)
    obj = lambda e, r, k: -(w * e).sum() + 0.3 * r[0] + 0.7 * k[-1]  # noqa: E731
    ours = torch.autograd.grad(obj(*out), model.flat_parameters())
    theirs = ref_model.grads_in_fastvae_order(obj(rec - kl, rec, kl))
    assert len(ours) == len(theirs) == len(model.flat_parameters())
    for a, b in zip(ours, theirs):
        assert (a - b).abs().max().item() <= 1e-9


@pytest.mark.parametrize("lik", ref.LIKELIHOODS)
def test_table_gradcheck_float64(lik):
    model = table_model(lik, "std-cond")
    x, y, eps = table_batch(model, B=4, L=2)
    params = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]

    def f(*ps):
        return ops.vae_elbo(x, y, eps, list(ps), *model.spec().as_args(), "mc")
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("lik", ref.LIKELIHOODS)
def test_iwae_bound_uses_the_likelihood(lik):
    # k = 1: the IWAE bound is the Monte Carlo ELBO of the same draw.
    model = table_model(lik)
    x, _, eps = table_batch(model, L=1)
    iw = ops.vae_iwae(x, None, eps, [p.detach() for p in model.flat_parameters()], *model.spec().as_args())
    torch.testing.assert_close(iw, fastvae.elbo(model, x, eps=eps, estimator="mc").elbo.detach(), atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("family", ref.FAMILIES, ids=ref.FAMILY_IDS)
def test_likelihood_mean_is_the_reference_mean(family, dtype):
    lik, gs, scale = family
    g = torch.Generator().manual_seed(1)
    x = ref.data(lik, (4, 6), g)
    out = 3 * torch.randn(2, 4, 12 if scale == "predicted" else 6, generator=g, dtype=F64)
    _, out = ref.LIKELIHOODS[lik].edge(x, out)
    out = out.reshape(8, -1)
    mean = ops.likelihood_mean(out.to(dtype), lik, gs, scale)
    want = ref.dist(out, lik, gs, scale).mean
    assert mean.dtype == dtype and mean.shape == want.shape
    torch.testing.assert_close(mean.double(), want, **(dict(atol=1e-9, rtol=0) if dtype == F64 else
                                                       dict(atol=1e-6, rtol=1e-6)))


@pytest.mark.parametrize("lik", ref.LIKELIHOODS)
def test_decode_is_the_likelihood_mean(lik):
    model = table_model(lik)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    want = ref.dist(model.decode(z, logits=True), lik, model.gaussian_sigma, "fixed").mean  # torch.distributions
    torch.testing.assert_close(model.decode(z), want, atol=1e-9, rtol=0)


@pytest.mark.parametrize("lik", ref.LIKELIHOODS)
def test_fit_trains_every_likelihood(lik):
    # binary likelihoods take thresholded pixels, the others the intensities themselves
    pixels = "threshold" if ref.LIKELIHOODS[lik].data == "binary" else "intensity"
    images = (torch.rand(40, 16, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8)
    torch.manual_seed(0)
    model = fastvae.VAE(16, 2, (8,), (8,), likelihood=lik, gaussian_sigma=ref.LIKELIHOODS[lik].scale)
    history = model.fit(images, epochs=3, batch_size=10, pixels=pixels, seed=0, progress=False)
    assert len(history.update_rec) == 12 and all(math.isfinite(v) for v in history.update_elbo)
    assert history.train_elbo[-1] > history.train_elbo[0]


# -- the continuous Bernoulli in detail ---------------------------------------------------------------------
@pytest.mark.parametrize("logit_scale", [1.0, 0.002], ids=["logits", "near-zero-logits"])
@pytest.mark.parametrize("estimator", ["analytic", "mc", "stl"])
@pytest.mark.parametrize("kind", SMALL)
def test_elbo_and_every_gradient_match_continuous_bernoulli_reference(kind, estimator, logit_scale):
    model = model_of(kind, logit_scale=logit_scale)
    x, y, eps = batch(model)
    out = fastvae.elbo(model, x, eps=eps, y=y, estimator=estimator)
    ref_model, rec, kl = reference_terms(model, x, eps, y, estimator)
    tol = dict(atol=1e-9, rtol=0)
    torch.testing.assert_close(out.rec, rec.detach(), **tol)
    torch.testing.assert_close(out.kl, kl.detach(), **tol)
    w = torch.linspace(0.5, 1.5, x.shape[0], dtype=F64)
    obj = lambda e, r, k: -(w * e).sum() + 0.3 * r[0] + 0.7 * k[-1]  # noqa: E731
    ours = torch.autograd.grad(obj(*out), model.flat_parameters())
    theirs = ref_model.grads_in_fastvae_order(obj(rec - kl, rec, kl))
    assert len(ours) == len(theirs) == len(model.flat_parameters())
    for a, b in zip(ours, theirs):
        assert (a - b).abs().max().item() <= 1e-9


def logit_grid():
    """Logits across the Taylor cut-off |a| = 2 artanh(0.002) ~ 0.004, down to 0, and up to |a| = 30."""
    cut = 2 * torch.atanh(torch.tensor(0.002, dtype=F64)).item()
    small = [0.0, 1e-12, 1e-8, 1e-5, 1e-3, cut * 0.999, cut * 1.001, 5e-3, 0.1, 0.5]
    big = [1.0, 2.5, 7.0, 15.0, 30.0]
    a = torch.tensor(small + big, dtype=F64)
    return torch.cat([a, -a[1:]])


def paper_log_prob(a: float, x: float):
    """log p(x | lambda) and its derivative in the logit a, lambda = sigmoid(a), from the paper's density
    C(lambda) lambda^x (1 - lambda)^(1 - x) with C = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) (C = 2 at
    lambda = 1/2), evaluated with 60 significant digits (mpmath) so that it is exact where float64 formulas
    (including torch.distributions') lose digits: near lambda = 1/2 and at large |a|."""
    mpmath = pytest.importorskip("mpmath")
    mp = mpmath.mp

    def f(t):
        lam = 1 / (1 + mp.exp(-t))
        c = 2 if t == 0 else 2 * mp.atanh(1 - 2 * lam) / (1 - 2 * lam)
        return mp.log(c) + x * mp.log(lam) + (1 - x) * mp.log(1 - lam)
    with mpmath.workdps(60):
        t = mp.mpf(a)
        d = mp.diff(f, t) if t != 0 else (f(mp.mpf("1e-30")) - f(mp.mpf("-1e-30"))) / mp.mpf("2e-30")
        return float(f(t)), float(d)


def paper_mean(a: float) -> float:
    """E[x] = lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda)) (1/2 at lambda = 1/2), 60 digits."""
    mpmath = pytest.importorskip("mpmath")
    mp = mpmath.mp
    if a == 0:
        return 0.5
    with mpmath.workdps(60):
        lam = 1 / (1 + mp.exp(-mp.mpf(a)))
        return float(lam / (2 * lam - 1) + 1 / (2 * mp.atanh(1 - 2 * lam)))


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_log_normaliser_and_its_derivative_on_a_grid_of_logits(dtype):
    # A decoder output layer with zero weights outputs its bias: logits a_d = bias_d for every z, so
    # rec = sum_d log p(x_d | a_d) and d rec / d bias = d log p / d a elementwise.
    a = logit_grid()
    m = fastvae.VAE(data_dim=a.numel(), latent_dim=1, encoder_hidden=(2,), decoder_hidden=(2,), likelihood=CB,
                    dtype=dtype)
    with torch.no_grad():
        m.decoder[-1].weight.zero_()
        m.decoder[-1].bias.copy_(a)
    x = torch.rand(1, a.numel(), generator=torch.Generator().manual_seed(4), dtype=F64)
    out = fastvae.elbo(m, x.to(dtype), eps=torch.zeros(1, 1, 1, dtype=dtype))
    (g,) = torch.autograd.grad(out.rec.sum(), [m.decoder[-1].bias])
    exact = torch.tensor([paper_log_prob(ai, xi) for ai, xi in zip(a.tolist(), x[0].tolist())], dtype=F64)
    tol = dict(atol=1e-9, rtol=0) if dtype == F64 else dict(atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out.rec.double(), exact[:, 0].sum().reshape(1), **tol)
    torch.testing.assert_close(g.double(), exact[:, 1], **tol)
    # torch.distributions.ContinuousBernoulli agrees where its float64 formula keeps its digits (|a| <= 7)
    a_ref = a.clone().requires_grad_()
    ref_lp = ContinuousBernoulli(logits=a_ref).log_prob(x[0])
    (g_ref,) = torch.autograd.grad(ref_lp.sum(), [a_ref])
    keep = a.abs() <= 7
    torch.testing.assert_close(g.double()[keep], g_ref[keep], **tol)
    torch.testing.assert_close(exact[keep, 0], ref_lp[keep].detach(), atol=1e-12, rtol=0)
    # the mean of p(x | z): decode returns the continuous Bernoulli mean, not sigmoid(a)
    mean = m.decode(torch.zeros(1, 1, dtype=dtype))[0].double()
    exact_mean = torch.tensor([paper_mean(ai) for ai in a.tolist()], dtype=F64)
    torch.testing.assert_close(mean, exact_mean, **(dict(atol=1e-15, rtol=1e-13) if dtype == F64 else
                                                   dict(atol=1e-7, rtol=1e-6)))
    torch.testing.assert_close(mean[keep], ContinuousBernoulli(logits=a[keep]).mean, atol=1e-6, rtol=0)
    assert not torch.allclose(mean, torch.sigmoid(a))


def test_normaliser_derivative_is_exact_near_zero():
    # log C = log 2 + a^2/12 - 7 a^4/1440 + ..., so d log C / da = a/6 - 7 a^3/360 at tiny a; the direct
    # formula 1/a - 1/sinh(a) would lose every digit there.
    a = torch.tensor([1e-9, -3e-7, 2e-4], dtype=F64)
    m = fastvae.VAE(data_dim=3, latent_dim=1, encoder_hidden=(2,), decoder_hidden=(2,), likelihood=CB, dtype=F64)
    with torch.no_grad():
        m.decoder[-1].weight.zero_()
        m.decoder[-1].bias.copy_(a)
    x = torch.full((1, 3), 0.25, dtype=F64)
    out = fastvae.elbo(m, x, eps=torch.zeros(1, 1, 1, dtype=F64))
    (g,) = torch.autograd.grad(out.rec.sum(), [m.decoder[-1].bias])
    expected = x[0] - torch.sigmoid(a) + a / 6 - 7 * a ** 3 / 360
    torch.testing.assert_close(g, expected, atol=1e-15, rtol=1e-12)


@pytest.mark.parametrize("estimator", ["analytic", "mc"])
@pytest.mark.parametrize("logit_scale", [1.0, 0.002], ids=["logits", "near-zero-logits"])
def test_gradcheck_float64(estimator, logit_scale):
    model = model_of("std-cond", logit_scale=logit_scale)
    x, y, eps = batch(model, B=4, L=2)
    params = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]

    def f(*ps):
        return ops.vae_elbo(x, y, eps, list(ps), *model.spec().as_args(), estimator)
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6)


def test_elbo_under_torch_compile():
    model = model_of("logvar-tanh")
    x, _, eps = batch(model)
    compiled = torch.compile(lambda x, eps: fastvae.elbo(model, x, eps=eps).elbo.sum(), fullgraph=True)
    torch.testing.assert_close(compiled(x, eps), fastvae.elbo(model, x, eps=eps).elbo.sum())


def test_checkpoint_keeps_the_likelihood(tmp_path):
    model = model_of("logvar-tanh")
    model.save(tmp_path / "m.pt")
    back = fastvae.VAE.load(tmp_path / "m.pt")
    assert back.likelihood == CB and back.spec() == model.spec()


def test_data_must_suit_the_likelihood():
    model = model_of("logvar-tanh")
    x, _, eps = batch(model)
    with pytest.raises(RuntimeError, match="must lie in \\[0, 1\\] for the continuous Bernoulli"):
        fastvae.elbo(model, x * 1.5, eps=eps)
    with pytest.raises(RuntimeError, match="must lie in \\[0, 1\\] for the continuous Bernoulli"):
        model.encode(x - 0.5)
    bern = fastvae.VAE(data_dim=9, latent_dim=3, encoder_hidden=(6,), decoder_hidden=(5,), dtype=F64)
    with pytest.raises(RuntimeError, match="must be binary"):
        fastvae.elbo(bern, x, eps=eps)


# -- Gaussian likelihood with a fixed scale (issue 9 item 1; Kingma & Welling 2014, C.2) ------------------
def gaussian_model(kind, sigma=0.3):
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=9, latent_dim=3, encoder_hidden=(6, 5), decoder_hidden=(5,), dtype=F64,
                       likelihood="gaussian", gaussian_sigma=sigma, **SMALL[kind])


@pytest.mark.parametrize("estimator", ["analytic", "mc", "stl"])
@pytest.mark.parametrize("kind", SMALL)
def test_gaussian_elbo_and_every_gradient_match_normal_reference(kind, estimator):
    model = gaussian_model(kind)
    x, y, eps = batch(model)
    x = 3 * x - 1  # real-valued data: any finite value is valid
    out = fastvae.elbo(model, x, eps=eps, y=y, estimator=estimator)
    ref_model = MlpReference(model)  # p(x | z) = Normal(decoder(z), 0.3)
    rec, kl = ref_model.elbo_terms(x, eps, y, estimator)
    torch.testing.assert_close(out.rec, rec.detach(), atol=1e-9, rtol=0)
    torch.testing.assert_close(out.kl, kl.detach(), atol=1e-9, rtol=0)
    w = torch.linspace(0.5, 1.5, x.shape[0], dtype=F64)
    obj = lambda e, r, k: -(w * e).sum() + 0.3 * r[0] + 0.7 * k[-1]  # noqa: E731
    ours = torch.autograd.grad(obj(*out), model.flat_parameters())
    theirs = ref_model.grads_in_fastvae_order(obj(rec - kl, rec, kl))
    for a, b in zip(ours, theirs):
        assert (a - b).abs().max().item() <= 1e-9
    z0 = eps[0]
    torch.testing.assert_close(model.decode(z0, y), model.decode(z0, y, logits=True))  # the mean is the output


def test_gaussian_gradcheck_float64():
    model = gaussian_model("logvar-tanh", sigma=0.7)
    x, y, eps = batch(model, B=4, L=2)
    params = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]

    def f(*ps):
        return ops.vae_elbo(x - 0.5, y, eps, list(ps), *model.spec().as_args(), "mc")
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6)


def test_gaussian_data_must_be_finite_and_sigma_positive():
    model = gaussian_model("logvar-tanh")
    x, _, eps = batch(model)
    x[0, 0] = float("inf")
    with pytest.raises(RuntimeError, match="x contains NaN or inf"):
        fastvae.elbo(model, x, eps=eps)
    with pytest.raises(ValueError, match="gaussian_sigma must be"):
        fastvae.VAE(9, 3, likelihood="gaussian", gaussian_sigma=0.0)
