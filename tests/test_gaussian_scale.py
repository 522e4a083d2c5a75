"""The Gaussian likelihood's learned per-pixel scale and decoder-predicted log-variance (issue 9 item 1;
Kingma & Welling 2014, C.2) against a plain PyTorch reference written with torch.nn.functional and
torch.distributions.Normal on clones of the model's parameters: ELBO (three KL estimators) and IWAE (three
encoder gradients) values and every parameter gradient in float64 within 1e-9, gradcheck, torch.compile,
fit against a plain PyTorch loop, and the checkpoint round trip of the extra parameter."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

import fastvae
from fastvae import _C

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
ACT = {"identity": lambda t, s: t, "relu": lambda t, s: F.relu(t), "tanh": lambda t, s: torch.tanh(t),
       "sigmoid": lambda t, s: torch.sigmoid(t), "leaky_relu": lambda t, s: F.leaky_relu(t, s)}


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


class Reference:
    """The model in plain PyTorch on leaf clones ``ps`` of its flat parameters (same order, so the
    gradients compare entry by entry): q(z | x, y) = Normal(mu, sigma) and p(x | z, y) = Normal(mean, scale)
    with scale = gaussian_sigma, exp(log_sigma) or exp(lv / 2) from the decoder's second half."""

    def __init__(self, model):
        self.m = model
        self.ps = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]
        self.n_enc = 2 * (len(model.encoder) + 1)

    def _mlp(self, h, layers, last_act):
        m = self.m
        for k, (w, b) in enumerate(layers):
            h = F.linear(h, w, b)
            if k + 1 < len(layers):
                h = ACT[m.activation](h, m.negative_slope)
        return h

    def _pairs(self, lo, hi):
        return [(self.ps[i], self.ps[i + 1]) for i in range(lo, hi, 2)]

    def _cond(self, h, y, n):
        if not self.m.cond_dim:
            return h
        return torch.cat([h, F.one_hot(y, self.m.cond_dim).to(h.dtype)], -1)

    def q(self, x, y):
        m, Z = self.m, self.m.latent_dim
        head = self._mlp(self._cond(x, y, x.shape[0]), self._pairs(0, self.n_enc), None)
        mu = ACT[m.mean_activation](head[:, :Z], m.negative_slope)
        s = ACT[m.scale_activation](head[:, Z:], m.negative_slope)
        sigma = {"logvar": lambda: torch.exp(s / 2), "logstd": lambda: torch.exp(s), "std": lambda: s}[m.posterior]()
        return Normal(mu, sigma)

    def p(self, z, y):
        m, D = self.m, self.m.data_dim
        n_dec = 2 * len(m.decoder)
        out = self._mlp(self._cond(z, y, z.shape[0]), self._pairs(self.n_enc, self.n_enc + n_dec), None)
        if m.gaussian_scale == "predicted":
            return Normal(out[:, :D], torch.exp(out[:, D:] / 2))
        if m.gaussian_scale == "learned":
            return Normal(out, torch.exp(self.ps[-1]).expand_as(out))
        return Normal(out, m.gaussian_sigma)

    def log_px_and_z(self, x, y, eps):
        L, B, Z = eps.shape
        qz = self.q(x, y)
        z = qz.loc + qz.scale * eps
        yy = None if y is None else y.repeat(L)
        log_px = self.p(z.reshape(L * B, Z), yy).log_prob(x.repeat(L, 1)).sum(-1).reshape(L, B)
        return qz, z, log_px

    def elbo_terms(self, x, y, eps, estimator):
        qz, z, log_px = self.log_px_and_z(x, y, eps)
        prior = Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale))
        if estimator == "analytic":
            kl = kl_divergence(qz, prior).sum(-1)
        else:  # STL (Roeder et al. 2017): q's parameters held fixed inside log q
            q_eval = qz if estimator == "mc" else Normal(qz.loc.detach(), qz.scale.detach())
            kl = (q_eval.log_prob(z) - prior.log_prob(z)).sum(-1).mean(0)
        return log_px.mean(0), kl

    def log_weights(self, x, y, eps, detach_q=False):
        qz, z, log_px = self.log_px_and_z(x, y, eps)
        prior = Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale))
        q_eval = Normal(qz.loc.detach(), qz.scale.detach()) if detach_q else qz
        return log_px + prior.log_prob(z).sum(-1) - q_eval.log_prob(z).sum(-1)

    def grads(self, objective):
        return torch.autograd.grad(objective, self.ps, allow_unused=True)

    def iwae_grads(self, x, y, eps, u, estimator):
        """Gradient of sum_i u_i iwae_i by the estimator's definition (as tests/reference_iwae.py)."""
        bound = lambda lw: torch.logsumexp(lw, 0) - math.log(lw.shape[0])  # noqa: E731
        if estimator == "reparam":
            return self.grads((u * bound(self.log_weights(x, y, eps))).sum())
        lw = self.log_weights(x, y, eps, detach_q=True)
        if estimator == "stl":
            return self.grads((u * bound(lw)).sum())
        wn = torch.softmax(lw, 0).detach()
        enc = self.grads((u * (wn ** 2 * lw).sum(0)).sum())
        dec = self.grads((u * bound(self.log_weights(x, y, eps))).sum())
        return enc[:self.n_enc] + dec[self.n_enc:]


def assert_grads_equal(ours, theirs, tol=1e-9):
    assert len(ours) == len(theirs)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        b = torch.zeros_like(a) if b is None else b
        err = (a - b).abs().max().item()
        assert err <= tol, f"parameter {k}: max abs error {err}"


def test_scale_table_is_exposed_and_shapes_follow_it():
    assert tuple(_C.GAUSSIAN_SCALES) == ("fixed", "learned", "predicted") == fastvae.arch.GAUSSIAN_SCALES
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
    torch.testing.assert_close(predicted.decode(z), raw[:, :9])  # decode returns the mean
    torch.testing.assert_close(learned.decode(z), learned.decode(z, logits=True))


@pytest.mark.parametrize("estimator", ["analytic", "mc", "stl"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scale", SCALES)
def test_elbo_and_every_gradient_match_normal_reference(scale, kind, estimator):
    model = model_of(scale, kind)
    x, y, eps = batch(model)
    out = fastvae.elbo(model, x, eps=eps, y=y, estimator=estimator)
    ref = Reference(model)
    rec, kl = ref.elbo_terms(x, y, eps, estimator)
    torch.testing.assert_close(out.rec, rec.detach(), atol=1e-9, rtol=0)
    torch.testing.assert_close(out.kl, kl.detach(), atol=1e-9, rtol=0)
    w = torch.linspace(0.5, 1.5, x.shape[0], dtype=F64)
    obj = lambda e, r, k: -(w * e).sum() + 0.3 * r[0] + 0.7 * k[-1]  # noqa: E731
    ours = torch.autograd.grad(obj(*out), model.flat_parameters())
    assert_grads_equal(ours, ref.grads(obj(rec - kl, rec, kl)))


@pytest.mark.parametrize("estimator", ["reparam", "stl", "dreg"])
@pytest.mark.parametrize("kind", ["logvar-tanh", "std-cond"])
@pytest.mark.parametrize("scale", SCALES)
def test_iwae_value_and_every_gradient_match_reference(scale, kind, estimator):
    model = model_of(scale, kind)
    x, y, eps = batch(model, L=4)
    out = fastvae.iwae(model, x, eps=eps, y=y, estimator=estimator)
    ref = Reference(model)
    lw = ref.log_weights(x, y, eps).detach()
    torch.testing.assert_close(out.detach(), torch.logsumexp(lw, 0) - math.log(4), atol=1e-9, rtol=0)
    u = torch.linspace(0.5, 1.5, x.shape[0], dtype=F64)
    ours = torch.autograd.grad((u * out).sum(), model.flat_parameters())
    assert_grads_equal(ours, ref.iwae_grads(x, y, eps, u, estimator))


@pytest.mark.parametrize("scale", SCALES)
def test_gradcheck_float64(scale):
    model = model_of(scale, "logvar-tanh", D=5)
    x, y, eps = batch(model, B=3, L=2)
    params = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]
    args = model.spec().as_args()
    assert torch.autograd.gradcheck(lambda *ps: ops.vae_elbo(x, y, eps, list(ps), *args, "mc"), params,
                                    eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda *ps: ops.vae_iwae_bound(x, y, eps, list(ps), *args, "reparam"),
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


# -- training: fit against a plain PyTorch loop, checkpoints --------------------------------------------------
def images(n=96, D=16, seed=0):
    return torch.randint(0, 256, (n, D), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def train_model(scale):
    torch.manual_seed(1)
    return fastvae.VAE(data_dim=16, latent_dim=3, encoder_hidden=(8,), decoder_hidden=(8,), likelihood="gaussian",
                       gaussian_sigma=0.5, gaussian_scale=scale, activation="tanh")


FIT = dict(batch_size=32, n_samples=2, lr=1e-2, betas=(0.9, 0.99), eps=1e-3, pixels="intensity")


def reference_fit(model, xs, *, updates, seed, batch_size, n_samples, lr, betas, eps, pixels):
    """cpp/train_loop.cpp in plain PyTorch: one randperm per epoch, intensities p / 255 (no draws), one
    normal_ of [L, batch, Z] per batch, fastvae.elbo and torch.optim.Adam over model.parameters()."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps)
    done = 0
    while done < updates:
        perm = torch.randperm(xs.shape[0], generator=g)
        for s in range(0, xs.shape[0], batch_size):
            idx = perm[s:s + batch_size]
            xb = xs[idx].float() / 255
            e = torch.empty(n_samples, len(idx), model.latent_dim).normal_(0, 1, generator=g)
            loss = -fastvae.elbo(model, xb, eps=e).elbo.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == updates:
                return


@pytest.mark.parametrize("scale", SCALES)
def test_fit_matches_plain_pytorch_loop(scale):
    xs = images()
    model, ref = train_model(scale), train_model(scale)
    model.fit(xs, epochs=3, seed=5, progress=False, **FIT)  # 9 updates
    reference_fit(ref, xs, updates=9, seed=5, **FIT)
    moved = False
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=2e-6, msg=lambda m: f"{name}: {m}")
    if scale == "learned":
        moved = not torch.allclose(model.log_sigma, torch.full((16,), math.log(0.5)))
        assert moved  # the log sigma is trained
        assert model.optimizer_state_.exp_avg[-1].shape == (16,)


def test_checkpoint_round_trip_keeps_the_learned_scale(tmp_path):
    xs = images()
    a = train_model("learned")
    a.fit(xs, epochs=1, seed=2, progress=False, **FIT)
    a.save(tmp_path / "m.pt")
    b = fastvae.VAE.load(tmp_path / "m.pt")
    assert b.gaussian_scale == "learned" and torch.equal(a.log_sigma, b.log_sigma)
    assert all(torch.equal(m, n) for m, n in zip(a.optimizer_state_.exp_avg_sq, b.optimizer_state_.exp_avg_sq))
    a.fit(xs, epochs=1, progress=False)
    b.fit(xs, epochs=1, progress=False)
    for p, q in zip(a.flat_parameters(), b.flat_parameters()):
        assert torch.equal(p, q)  # the resumed run is the same run
    c = train_model("predicted")
    c.save(tmp_path / "p.pt")
    d = fastvae.VAE.load(tmp_path / "p.pt")
    assert d.gaussian_scale == "predicted" and d.decoder[-1].weight.shape == (32, 8)
