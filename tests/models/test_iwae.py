"""fastvae.iwae (the IWAE bound as an objective, C++ value and hand-written gradient) against a plain
PyTorch IWAE written from Burda et al. 2016 with torch.distributions, and its three encoder gradients:
reparameterization (plain autograd of the bound), STL (Roeder et al. 2017: q's parameters detached inside
log q) and DReG (Tucker et al. 2018: the encoder surrogate sum_l stopgrad(wn_l^2) log w_l with q's
parameters detached inside log q; the decoder keeps the IWAE gradient)."""
import pytest
import torch

import fastvae
from reference.vae import MlpReference

PRESETS = ["stats305c", "ese546", "cvae_hw7", "dd2434"]
ESTIMATORS = ["reparam", "stl", "dreg"]


def make_batch(model, B=5, K=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(B, model.data_dim, generator=g) < 0.3).to(dtype)
    y = torch.randint(0, model.cond_dim, (B,), generator=g) if model.cond_dim else None
    eps = torch.randn(K, B, model.latent_dim, generator=g, dtype=dtype)
    return x, y, eps


@pytest.mark.parametrize("K", [1, 5])
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("name", PRESETS)
def test_iwae_value_and_gradients_match_reference(name, estimator, K):
    model = fastvae.VAE.from_preset(name, dtype=torch.float64)
    ref = MlpReference(model, name)
    x, y, eps = make_batch(model, K=K)
    out = fastvae.iwae(model, x, eps=eps, y=y, estimator=estimator)
    theirs_value, surrogate = ref.iwae(x, eps, y, estimator)
    assert (out.detach() - theirs_value).abs().max().item() <= 1e-9
    u = torch.linspace(0.5, 1.5, x.shape[0], dtype=torch.float64)  # uneven upstream weights per image
    ours = torch.autograd.grad((u * out).sum(), model.flat_parameters())
    theirs = ref.grads_in_fastvae_order((u * surrogate).sum())
    for a, b in zip(ours, theirs):
        assert (a - b).abs().max().item() <= 1e-9


@pytest.mark.parametrize("name", PRESETS)
def test_k1_bound_is_the_mc_elbo(name):
    model = fastvae.VAE.from_preset(name, dtype=torch.float64)
    x, y, eps = make_batch(model, K=1)
    bound = fastvae.iwae(model, x, eps=eps, y=y)
    mc = fastvae.elbo(model, x, eps=eps, y=y, estimator="mc").elbo
    torch.testing.assert_close(bound, mc, atol=1e-9, rtol=0)
    # and the gradients agree too (reparam IWAE with k = 1 is the MC ELBO's reparameterization gradient)
    g1 = torch.autograd.grad(bound.sum(), model.flat_parameters())
    g2 = torch.autograd.grad(mc.sum(), model.flat_parameters())
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0)


def test_bound_matches_log_likelihood_and_tightens():
    model = fastvae.VAE.from_preset("ese546", dtype=torch.float64)
    x, _, eps = make_batch(model, K=50)
    with torch.no_grad():
        bound = fastvae.iwae(model, x, eps=eps)
        inference = torch.ops.fastvae.vae_iwae(x, None, eps, model.flat_parameters(), *model.spec().as_args())
        want, _ = MlpReference(model, "ese546").iwae(x, eps)
        torch.testing.assert_close(bound, want, atol=1e-9, rtol=0)  # the objective and the inference op alike
        torch.testing.assert_close(inference, want, atol=1e-9, rtol=0)
        elbo = fastvae.elbo(model, x, eps=eps, estimator="mc").elbo
    assert (bound >= elbo - 1e-12).all()  # Jensen: the IWAE bound is at least the mean of log w


def test_float32_close_to_float64():
    m64 = fastvae.VAE.from_preset("ese546", dtype=torch.float64)
    m32 = fastvae.VAE.from_preset("ese546", dtype=torch.float32)
    m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
    x, _, eps = make_batch(m64, K=5)
    for est in ESTIMATORS:
        a = fastvae.iwae(m64, x, eps=eps, estimator=est)
        b = fastvae.iwae(m32, x.float(), eps=eps.float(), estimator=est)
        torch.testing.assert_close(b.double(), a.detach(), atol=2e-3, rtol=1e-4)
        ga = torch.autograd.grad(a.sum(), m64.flat_parameters())
        gb = torch.autograd.grad(b.sum(), m32.flat_parameters())
        for p, q in zip(ga, gb):
            torch.testing.assert_close(q.double(), p, atol=1e-3, rtol=1e-3)


SMALL = {
    "stats305c": dict(activation="relu", posterior="logstd"),
    "ese546": dict(activation="tanh", posterior="logvar"),
    "cvae_hw7": dict(activation="relu", posterior="std", mean_activation="sigmoid", scale_activation="sigmoid",
                     cond_dim=3),
    "dd2434": dict(activation="leaky_relu", negative_slope=0.2, posterior="logvar"),
}


# Only "reparam" is the derivative of the value; STL and DReG are checked against their references above.
@pytest.mark.parametrize("name", PRESETS)
def test_gradcheck_reparam_float64(name):
    torch.manual_seed(0)
    model = fastvae.VAE(data_dim=7, latent_dim=3, encoder_hidden=(5, 4), decoder_hidden=(4, 6),
                        dtype=torch.float64, **SMALL[name])
    x, y, eps = make_batch(model, B=4, K=3)
    params = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]

    def f(*ps):
        return torch.ops.fastvae.vae_iwae_bound(x, y, eps, list(ps), *model.spec().as_args(), "reparam", "iwae", 1, 0.0)

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6)


def test_estimators_differ_in_gradient_not_value():
    model = fastvae.VAE.from_preset("ese546", dtype=torch.float64)
    x, _, eps = make_batch(model, K=5)
    vals, grads = [], []
    for est in ESTIMATORS:
        v = fastvae.iwae(model, x, eps=eps, estimator=est)
        vals.append(v.detach())
        grads.append(torch.autograd.grad(v.sum(), model.flat_parameters()))
    assert torch.equal(vals[0], vals[1]) and torch.equal(vals[0], vals[2])
    enc_head_w = 2 * len(model.encoder)  # encoder_head.weight: the estimators change it
    assert not torch.allclose(grads[0][enc_head_w], grads[1][enc_head_w])
    assert not torch.allclose(grads[1][enc_head_w], grads[2][enc_head_w])
    for g0, g2 in zip(grads[0][enc_head_w + 2:], grads[2][enc_head_w + 2:]):  # decoder: same gradient
        torch.testing.assert_close(g0, g2, atol=1e-12, rtol=0)


def test_iwae_under_torch_compile():
    model = fastvae.VAE(data_dim=12, latent_dim=3, encoder_hidden=(8,), decoder_hidden=(8,), dtype=torch.float64)
    x, _, eps = make_batch(model, B=4, K=3)

    @torch.compile(backend="aot_eager", fullgraph=True)
    def f(x, eps):
        return fastvae.iwae(model, x, eps=eps, estimator="dreg")

    got = f(x, eps)
    want = fastvae.iwae(model, x, eps=eps, estimator="dreg")
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    g1 = torch.autograd.grad(got.sum(), model.flat_parameters())
    g2 = torch.autograd.grad(want.sum(), model.flat_parameters())
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_generator_draws_k_samples():
    model = fastvae.VAE.from_preset("ese546", dtype=torch.float64)
    x, _, _ = make_batch(model)
    a = fastvae.iwae(model, x, k=4, generator=torch.Generator().manual_seed(3))
    eps = torch.randn(4, x.shape[0], model.latent_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, fastvae.iwae(model, x, eps=eps), atol=0, rtol=0)
