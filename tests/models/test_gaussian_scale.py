"""The Gaussian likelihood's learned per-pixel scale and decoder-predicted log-variance (issue 9 item 1;
Kingma & Welling 2014, C.2) against the plain PyTorch reference VAE (tests/reference/vae.py: torch.nn and
torch.distributions.Normal on copies of the model's parameters): ELBO (three KL estimators) and IWAE (three
encoder gradients) values and every parameter gradient in float64 within 1e-9, gradcheck, torch.compile.
Training: tests/training/test_gaussian_scale_fit.py; checkpoints: tests/checkpoint/test_checkpoint.py."""
import math

import pytest
import torch

import fastvae
from fastvae import _C
from reference.vae import MlpReference

F64 = torch.float64
ops = torch.ops.fastvae
SCALES = ["learned", "predicted"]
KINDS = {  # the homework heads and conditioning at small sizes
    "logstd-relu": dict(activation="relu", posterior="logstd"),
    "logvar-tanh": dict(activation="tanh", posterior="logvar"),
    "std-cond": dict(activation="relu", posterior="std", mean_activation="sigmoid", scale_activation="sigmoid",
                     cond_dim=3),
    "logvar-leaky": dict(activation="leaky_relu", negative_slope=0.2, posterior="logvar"),
}


def model_of(scale, kind="logvar-tanh", dtype=F64, D=9, **kw):
    torch.manual_seed(0)
    m = fastvae.VAE(data_dim=D, latent_dim=3, encoder_hidden=(6, 5), decoder_hidden=(5,), dtype=dtype,
                    likelihood="gaussian", gaussian_sigma=0.3, gaussian_scale=scale, **KINDS[kind], **kw)
    if scale == "learned":
        with torch.no_grad():  # distinct scales per pixel, so a pixel mix-up cannot pass
            m.log_sigma.add_(torch.linspace(-0.5, 0.5, D, dtype=dtype))
    return m


def batch(model, B=5, L=3, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.rand(B, model.data_dim, generator=g, dtype=dtype) - 1  # real-valued data
    y = torch.randint(0, model.cond_dim, (B,), generator=g) if model.cond_dim else None
    eps = torch.randn(L, B, model.latent_dim, generator=g, dtype=dtype)
    return x, y, eps


def assert_grads_equal(ours, theirs, tol=1e-9):
    assert len(ours) == len(theirs)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        b = torch.zeros_like(a) if b is None else b
        err = (a - b).abs().max().item()
        assert err <= tol, f"parameter {k}: max abs error {err}"


def test_scale_table_is_exposed_and_shapes_follow_it():
    assert tuple(_C.GAUSSIAN_SCALES) == ("fixed", "learned", "predicted")
    fixed, learned, predicted = (model_of(s) for s in ("fixed", "learned", "predicted"))
    assert fixed.spec().gaussian_scale == "fixed" and fixed.log_sigma is None
    assert len(learned.flat_parameters()) == len(fixed.flat_parameters()) + 1
    assert learned.flat_parameters()[-1] is learned.log_sigma
    assert any(p is learned.log_sigma for p in learned.parameters())  # torch.optim sees it
    assert "log_sigma" in learned.state_dict()
    fresh = fastvae.VAE(9, 3, likelihood="gaussian", gaussian_sigma=0.3, gaussian_scale="learned")
    torch.testing.assert_close(fresh.log_sigma.detach(), torch.full((9,), math.log(0.3)))
    assert predicted.decoder[-1].weight.shape == (18, 5)
    z = torch.randn(4, 3, dtype=F64)
    raw = predicted.decode(z, logits=True)
    assert raw.shape == (4, 18)
    for m in (predicted, learned):  # decode returns the mean of p(x | z)
        torch.testing.assert_close(m.decode(z), MlpReference(m).mean(z).detach(), atol=1e-12, rtol=0)


@pytest.mark.parametrize("estimator", ["analytic", "mc", "stl"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scale", SCALES)
def test_elbo_and_every_gradient_match_normal_reference(scale, kind, estimator):
    model = model_of(scale, kind)
    x, y, eps = batch(model)
    out = fastvae.elbo(model, x, eps=eps, y=y, estimator=estimator)
    ref = MlpReference(model)
    rec, kl = ref.elbo_terms(x, eps, y, estimator)
    torch.testing.assert_close(out.rec, rec.detach(), atol=1e-9, rtol=0)
    torch.testing.assert_close(out.kl, kl.detach(), atol=1e-9, rtol=0)
    w = torch.linspace(0.5, 1.5, x.shape[0], dtype=F64)
    obj = lambda e, r, k: -(w * e).sum() + 0.3 * r[0] + 0.7 * k[-1]  # noqa: E731
    ours = torch.autograd.grad(obj(*out), model.flat_parameters())
    assert_grads_equal(ours, ref.grads_in_fastvae_order(obj(rec - kl, rec, kl)))


@pytest.mark.parametrize("estimator", ["reparam", "stl", "dreg"])
@pytest.mark.parametrize("kind", ["logvar-tanh", "std-cond"])
@pytest.mark.parametrize("scale", SCALES)
def test_iwae_value_and_every_gradient_match_reference(scale, kind, estimator):
    model = model_of(scale, kind)
    x, y, eps = batch(model, L=4)
    out = fastvae.iwae(model, x, eps=eps, y=y, estimator=estimator)
    ref = MlpReference(model)
    value, surrogate = ref.iwae(x, eps, y, estimator)
    torch.testing.assert_close(out.detach(), value, atol=1e-9, rtol=0)
    u = torch.linspace(0.5, 1.5, x.shape[0], dtype=F64)
    ours = torch.autograd.grad((u * out).sum(), model.flat_parameters())
    assert_grads_equal(ours, ref.grads_in_fastvae_order((u * surrogate).sum()))


@pytest.mark.parametrize("scale", SCALES)
def test_gradcheck_float64(scale):
    model = model_of(scale, "logvar-tanh", D=5)
    x, y, eps = batch(model, B=3, L=2)
    params = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]
    args = model.spec().as_args()
    assert torch.autograd.gradcheck(lambda *ps: ops.vae_elbo(x, y, eps, list(ps), *args, "mc"), params,
                                    eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda *ps: ops.vae_iwae_bound(x, y, eps, list(ps), *args, "reparam", "iwae", 1, 0.0),
                                    params, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale", SCALES)
def test_elbo_under_torch_compile(scale):
    model = model_of(scale)
    x, _, eps = batch(model)
    compiled = torch.compile(lambda x, eps: fastvae.elbo(model, x, eps=eps).elbo.sum(), fullgraph=True)
    torch.testing.assert_close(compiled(x, eps), fastvae.elbo(model, x, eps=eps).elbo.sum())


def test_float32_close_to_float64():
    for scale in SCALES:
        m64 = model_of(scale)
        m32 = model_of(scale, dtype=torch.float32)
        m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
        x, _, eps = batch(m64)
        a = fastvae.elbo(m64, x, eps=eps).elbo
        b = fastvae.elbo(m32, x.float(), eps=eps.float()).elbo
        torch.testing.assert_close(b.double(), a.detach(), atol=1e-3, rtol=1e-4)
        for p, q in zip(torch.autograd.grad(a.sum(), m64.flat_parameters()),
                        torch.autograd.grad(b.sum(), m32.flat_parameters())):
            torch.testing.assert_close(q.double(), p, atol=1e-3, rtol=1e-3)


def test_data_must_be_finite_and_predicted_log_variance_is_not_clamped():
    model = model_of("predicted")
    x, _, eps = batch(model)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="x contains NaN or inf"):
        fastvae.elbo(model, bad, eps=eps)
    with torch.no_grad():  # a log-variance of -800 underflows exp(lv): 1/var overflows; refused, never clamped
        model.decoder[-1].weight[9:].zero_()
        model.decoder[-1].bias[9:].fill_(-800.0)
    with pytest.raises(ValueError, match="the predicted log-variance goes down to -800"):
        fastvae.elbo(model, x, eps=eps)
