"""The VAE with stochastic layers above z1 (Burda et al. 2016, Sec. 5; VAE(upper_latents=...)) in the fused engine
against a plain PyTorch reference written from the paper's log weights with torch.distributions
(tests/reference/vae.py, HierarchicalReference): the IWAE bound, MIWAE / CIWAE / PIWAE and the ELBO, values and
every parameter gradient in float64 within 1e-9 for each encoder gradient estimator; gradcheck; sampling down the
chain; training, checkpoints and the errors."""
import pytest
import torch

import fastvae
from reference.vae import HierarchicalReference

ESTIMATORS = ["reparam", "stl", "dreg"]
# (objective, groups, samples, beta)
OBJECTIVES = [("iwae", 1, 5, 0.0), ("iwae", 1, 1, 0.0), ("miwae", 2, 6, 0.0), ("ciwae", 1, 4, 0.3),
              ("piwae", 3, 6, 0.0)]
ARCHS = {  # the paper's two-layer shape, small; and three stochastic layers with logstd heads
    "two-layer": dict(data_dim=12, latent_dim=4, encoder_hidden=(9, 7), decoder_hidden=(7, 9), activation="tanh",
                      upper_latents=(3,), upper_hidden=(5, 5)),
    "three-layer": dict(data_dim=10, latent_dim=4, encoder_hidden=(8,), decoder_hidden=(8,), activation="tanh",
                        posterior="logstd", upper_latents=(3, 2), upper_hidden=(6,)),
}


def make(arch, seed=0):
    torch.manual_seed(seed)
    model = fastvae.VAE(dtype=torch.float64, **ARCHS[arch])
    with torch.no_grad():  # larger weights than the default init, so that every term matters
        for p in model.parameters():
            p.mul_(2.0)
    return model


def batch(model, B=3, L=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(B, model.data_dim, generator=g) < 0.4).double()
    return x, torch.randn(L, B, model.noise_dim, generator=g, dtype=torch.float64)


def bound_of(model, x, eps, objective, groups, beta, estimator):
    if objective == "iwae":
        return model.iwae(x, eps=eps, estimator=estimator)
    if objective == "ciwae":
        return model.ciwae(x, beta=beta, eps=eps, estimator=estimator)
    return getattr(model, objective)(x, groups, eps=eps, estimator=estimator)


def reference_grads(ref, x, eps, objective, groups, beta, estimator, u):
    """The reference's value and gradients: the encoder's parameters from the encoder's surrogate, the decoder's
    from the decoder's (dreg: their sum, each surrogate holding the other side fixed)."""
    value, enc, _ = ref.iw_objective(x, eps, objective, groups, beta, None, estimator)
    g_enc = ref.grads_in_fastvae_order((u * enc).sum())
    g_dec = ref.grads_in_fastvae_order((u * ref.iw_objective(x, eps, objective, groups, beta, None, estimator)[2]).sum())
    return value, g_enc, g_dec


def encoder_side(model):
    """Whether each flat parameter belongs to the inference side (encoder, its head, every upper q MLP)."""
    sides = [True] * (2 * len(model.encoder) + 2) + [False] * (2 * len(model.decoder))
    for q, p in zip(model.upper_encoders, model.upper_decoders):
        sides += [True] * (2 * len(q)) + [False] * (2 * len(p))
    return sides


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("objective, M, L, beta", OBJECTIVES, ids=[f"{o}-M{m}-L{n}" for o, m, n, _ in OBJECTIVES])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_bounds_match_reference(arch, objective, M, L, beta, estimator):
    model = make(arch)
    ref = HierarchicalReference(model)
    x, eps = batch(model, L=L)
    out = bound_of(model, x, eps, objective, M, beta, estimator)
    u = torch.linspace(0.5, 1.5, x.shape[0], dtype=torch.float64)
    value, g_enc, g_dec = reference_grads(ref, x, eps, objective, M, beta, estimator, u)
    torch.testing.assert_close(out.detach(), value, rtol=0, atol=1e-9)
    ours = torch.autograd.grad((u * out).sum(), model.flat_parameters())
    for i, (a, be, bd, enc) in enumerate(zip(ours, g_enc, g_dec, encoder_side(model))):
        b = be + bd if estimator == "dreg" else (be if enc else bd)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9, msg=lambda m: f"parameter {i}: {m}")


@pytest.mark.parametrize("estimator", ["mc", "stl"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_elbo_matches_reference(arch, estimator):
    model = make(arch, seed=2)
    ref = HierarchicalReference(model)
    x, eps = batch(model, L=3, seed=3)
    out = model.elbo(x, eps=eps, estimator=estimator)
    lw = ref.log_weights(x, eps)
    torch.testing.assert_close(out.elbo.detach(), lw.mean(0).detach(), rtol=0, atol=1e-9)
    torch.testing.assert_close(out.rec.detach(), ref.log_px(x, ref.q(x).loc + ref.q(x).scale * eps[..., :4]).mean(0)
                               .detach(), rtol=0, atol=1e-9)
    torch.testing.assert_close((out.rec - out.kl).detach(), out.elbo.detach(), rtol=0, atol=1e-9)
    surrogate = ref.log_weights(x, eps, detach_q=estimator == "stl").mean(0)
    theirs = ref.grads_in_fastvae_order(surrogate.sum())
    ours = torch.autograd.grad(out.elbo.sum(), model.flat_parameters())
    for i, (a, b) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9, msg=lambda m: f"parameter {i}: {m}")


@pytest.mark.parametrize("objective, groups, beta", [("iwae", 1, 0.0), ("miwae", 2, 0.0), ("ciwae", 1, 0.6)])
def test_gradcheck_float64(objective, groups, beta):
    model = make("three-layer", seed=4)
    x, eps = batch(model, B=2, L=4, seed=5)
    params = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]

    def f(*ps):
        return torch.ops.fastvae.vae_iwae_bound(x, None, eps, list(ps), *model.spec().as_args(), "reparam",
                                                objective, groups, beta)

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6)


def test_sample_draws_down_the_chain():
    # VAE.sample: z_top ~ N(0, I), then z1 ~ p(z1 | z2), then the decoder's means; the same draws by hand
    model = make("two-layer", seed=6)
    ref = HierarchicalReference(model)
    out = model.sample(7, generator=torch.Generator().manual_seed(9))
    noise = torch.randn(7, model.noise_dim, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    p1 = ref._gaussian(ref.p_up[0], noise[:, 4:], False)
    z1 = p1.loc + p1.scale * noise[:, :4]
    torch.testing.assert_close(out, ref.mean(z1).detach(), rtol=0, atol=1e-12)


def test_log_likelihood_is_the_iwae_bound_and_fit_trains(tmp_path):
    model = fastvae.VAE(data_dim=10, latent_dim=3, encoder_hidden=(8,), decoder_hidden=(8,), activation="tanh",
                        upper_latents=(2,), upper_hidden=(6,))
    images = torch.randint(0, 256, (64, 10), dtype=torch.uint8)
    before = [p.detach().clone() for p in model.parameters()]
    for opts in (dict(), dict(objective="iwae", k=3, iwae_estimator="dreg"), dict(objective="piwae", groups=2, k=2)):
        hist = model.fit(images, fastvae.TrainOptions(epochs=1, batch_size=16, estimator="mc", **opts),
                         progress=False)
        assert torch.isfinite(torch.tensor(hist.train_elbo)).all()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    x = (images[:5] > 127).float()
    g = torch.Generator().manual_seed(0)
    ll = model.log_likelihood(x, k=50, generator=g)
    eps = torch.randn(50, 5, model.noise_dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ll, model.iwae(x, eps=eps).detach())
    model.save(tmp_path / "m.pt")
    again = fastvae.VAE.load(tmp_path / "m.pt")
    assert again.upper_latents == (2,) and all(torch.equal(a, b) for a, b in zip(again.parameters(),
                                                                                 model.parameters()))


X = (torch.rand(3, 12) > 0.5).double()
ERRORS = [
    ("categorical", lambda: fastvae.VAE(12, 2, latent="categorical", categories=3, upper_latents=(2,)), ValueError,
     "upper stochastic layers need latent='gaussian'"),
    ("std-posterior", lambda: fastvae.VAE(12, 2, posterior="std", scale_activation="sigmoid", upper_latents=(2,)),
     ValueError, "posterior 'logvar' or 'logstd'"),
    ("hidden-alone", lambda: fastvae.VAE(12, 2, upper_hidden=(4,)), ValueError, "it needs upper_latents"),
    ("zero-size", lambda: fastvae.VAE(12, 2, upper_latents=(0,)), ValueError, "upper_latents"),
    ("float-size", lambda: fastvae.VAE(12, 2, upper_latents=(2.5,)), TypeError, "upper_latents"),
    ("analytic-kl", lambda: make("two-layer").elbo(X), RuntimeError, "has no analytic KL"),
    ("eps-width", lambda: make("two-layer").iwae(X, eps=torch.zeros(2, 3, 4, dtype=torch.float64)), ValueError,
     r"latent_dim \+ sum\(upper_latents\)"),
    ("rec-alone", lambda: (lambda m: torch.autograd.grad(m.elbo(X, estimator="mc").rec.sum(),
                                                         m.flat_parameters()))(make("two-layer")),
     RuntimeError, "differentiates the ELBO as a whole"),
    ("kl-weight", lambda: make("two-layer").float().fit(torch.zeros(8, 12, dtype=torch.uint8),
                                                        fastvae.TrainOptions(estimator="mc", kl_weight=0.5),
                                                        progress=False),
     ValueError, "upper stochastic layers"),
    ("fit-analytic", lambda: make("two-layer").float().fit(torch.zeros(8, 12, dtype=torch.uint8),
                                                           fastvae.TrainOptions(), progress=False),
     ValueError, "upper stochastic layers"),
]


@pytest.mark.parametrize("call, error, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_layer_means_and_active_units_per_layer():
    # E_q[z2 | x] = E_q(z1|x)[mu_q2(z1)], estimated with the same draws by hand; active units of each layer
    model = make("two-layer", seed=7)
    ref = HierarchicalReference(model)
    x, _ = batch(model, B=6, seed=8)
    means = model.layer_means(x, samples=50, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(50, 6, model.noise_dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    qz = ref.q(x)
    z1 = qz.loc + qz.scale * noise[..., :4]
    torch.testing.assert_close(means[0], qz.loc.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(means[1], ref._gaussian(ref.q_up[0], z1, False).loc.mean(0).detach(), rtol=0,
                               atol=1e-12)
    for layer, size in ((1, 4), (2, 3)):
        n, stat = fastvae.diagnostics.active_units(model, x, layer=layer, generator=torch.Generator().manual_seed(3))
        assert stat.shape == (size,) and n == int((stat > 1e-2).sum())
    with pytest.raises(ValueError, match="layer must be"):
        fastvae.diagnostics.active_units(model, x, layer=3)


def test_elbo_gradcheck_with_a_learned_gaussian_scale():
    # the ELBO's backward of a hierarchical model writes the likelihood's gradient (and the learned log sigma's)
    # in iwae_backward, not in the forward pass
    torch.manual_seed(0)
    m = fastvae.VAE(6, 3, (5,), (4,), dtype=torch.float64, activation="tanh", likelihood="gaussian",
                    gaussian_scale="learned", upper_latents=(2,), upper_hidden=(4,))
    x, eps = torch.randn(3, 6, dtype=torch.float64), torch.randn(2, 3, 5, dtype=torch.float64)
    params = [p.detach().clone().requires_grad_() for p in m.flat_parameters()]

    def f(*ps):
        return torch.ops.fastvae.vae_elbo(x, None, eps, list(ps), *m.spec().as_args(), "mc")[0]

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6)
