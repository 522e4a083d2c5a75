"""Categorical latents (issue 9 item 3; Jang, Gu & Poole 2017): fastvae.elbo with latent="categorical" against
the reference VAE (tests/reference/vae.py: the Gumbel-softmax of the paper on the same uniforms, kl_divergence to
Categorical(uniform)) in float64, values and every parameter gradient within
1e-9, soft and straight-through, each likelihood, conditional or not; gradcheck; torch.compile; the model API
(encode, decode, sample, reconstruct, checkpoints)."""
import math

import pytest
import torch
import torch.nn.functional as F

import fastvae
from reference.vae import MlpReference

F64 = torch.float64
TOL = dict(rtol=1e-9, atol=1e-9)


def make(likelihood="bernoulli", cond=0, activation="tanh", dtype=F64, seed=0, **kw):
    torch.manual_seed(seed)
    return fastvae.VAE(data_dim=12, latent_dim=3, categories=4, latent="categorical", encoder_hidden=(9, 7),
                       decoder_hidden=(8,), activation=activation, cond_dim=cond, likelihood=likelihood,
                       gaussian_sigma=0.7, dtype=dtype, **kw)


def uniforms_like(n_samples, batch, model, dtype, seed):
    """Uniform noise [L, B, N * K] in (0, 1) for the Gumbel draws."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_samples, batch, model.code_dim, generator=g, dtype=dtype).clamp(1e-12, 1 - 1e-12)


def data(likelihood, n, seed):
    g = torch.Generator().manual_seed(seed)
    if likelihood == "bernoulli":
        return (torch.rand(n, 12, generator=g) < 0.4).to(F64)
    if likelihood == "continuous_bernoulli":
        return torch.rand(n, 12, generator=g, dtype=F64)
    return torch.randn(n, 12, generator=g, dtype=F64)


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli", "gaussian"])
@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
@pytest.mark.parametrize("cond,n_samples", [(0, 1), (3, 4)], ids=["uncond-L1", "cond-L4"])
def test_values_and_every_gradient_match_the_reference(likelihood, hard, cond, n_samples):
    model = make(likelihood, cond, activation="relu" if cond else "tanh", seed=1)
    B, tau = 5, 0.6
    x = data(likelihood, B, seed=2)
    y = torch.tensor([0, 2, 1, 1, 0]) if cond else None
    u = uniforms_like(n_samples, B, model, F64, seed=3)
    ours = fastvae.elbo(model, x, eps=u, y=y, temperature=tau, hard=hard)
    ref = MlpReference(model)
    rec, kl = ref.elbo_terms(x, u, y, temperature=tau, hard=hard)
    torch.testing.assert_close(ours.rec, rec.detach(), **TOL)
    torch.testing.assert_close(ours.kl, kl.detach(), **TOL)
    torch.testing.assert_close(ours.elbo, (rec - kl).detach(), **TOL)
    # weighted objective: distinct weights per image and per term reach every gradient path
    w_rec = torch.linspace(-1.0, 0.5, B, dtype=F64)
    w_kl = torch.linspace(0.3, 1.7, B, dtype=F64)
    g_ours = torch.autograd.grad((w_rec * ours.rec + w_kl * ours.kl).sum(), model.flat_parameters())
    g_ref = ref.grads_in_fastvae_order((w_rec * rec + w_kl * kl).sum())
    for i, (a, b) in enumerate(zip(g_ours, g_ref)):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, i=i: f"parameter {i}: {m}")


def test_relaxed_sample_is_the_gumbel_softmax():
    """The engine's decoder input is the Gumbel-softmax sample of Jang et al. (eq. 1-2; straight through if hard),
    read directly: with a 1-layer decoder of identity weights and a Gaussian likelihood, rec = log N(0 | y, 1)
    summed over the 6 code entries, y the reference's sample from the reference's logits."""
    model = fastvae.VAE(data_dim=6, latent_dim=2, categories=3, latent="categorical", encoder_hidden=(5,),
                        decoder_hidden=(), likelihood="gaussian", dtype=F64)
    with torch.no_grad():  # decoder = identity on the 6 code entries: the decoder output is the sample itself
        model.decoder[0].weight.copy_(torch.eye(6, dtype=F64))
        model.decoder[0].bias.zero_()
    x = torch.zeros(4, 6, dtype=F64)
    u = uniforms_like(1, 4, model, F64, seed=5)
    ref = MlpReference(model)
    for hard in (False, True):
        ys = ref.relaxed_sample(ref.q_logits(x), u, 0.4, hard).detach().reshape(4, 6)
        expected = -0.5 * (ys ** 2).sum(-1) - 6 * (0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=F64)))
        torch.testing.assert_close(fastvae.elbo(model, x, eps=u, temperature=0.4, hard=hard).rec, expected, **TOL)


def test_kl_is_zero_at_the_uniform_posterior_and_log_k_per_variable_at_a_one_hot_one():
    model = make()
    x = data("bernoulli", 3, seed=4)
    with torch.no_grad():
        model.encoder_head.weight.zero_()
        model.encoder_head.bias.zero_()
    torch.testing.assert_close(fastvae.elbo(model, x).kl, torch.zeros(3, dtype=F64), atol=1e-12, rtol=0)
    with torch.no_grad():
        model.encoder_head.bias.copy_(torch.tensor([60.0, 0, 0, 0] * 3, dtype=F64))
    torch.testing.assert_close(fastvae.elbo(model, x).kl, torch.full((3,), 3 * math.log(4.0), dtype=F64), atol=1e-12, rtol=0)


def test_gradcheck_of_the_relaxed_elbo():
    model = make("continuous_bernoulli", cond=3, seed=6)
    x = data("continuous_bernoulli", 3, seed=7)
    y = torch.tensor([2, 0, 1])
    u = uniforms_like(2, 3, model, F64, seed=8)
    arch = model.spec().as_args()
    params = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]

    def f(*ps):
        e, r, k = torch.ops.fastvae.vae_categorical_elbo(x, y, u, list(ps), *arch, 0.8, False)
        return e.sum() + 0.3 * r.sum() - 0.7 * k.sum()

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-7)


def test_elbo_under_torch_compile():
    model = make(seed=9)
    x = data("bernoulli", 4, seed=10)
    u = uniforms_like(2, 4, model, F64, seed=11)
    compiled = torch.compile(lambda x, u: fastvae.elbo(model, x, eps=u, temperature=0.5, hard=True).elbo.sum(),
                             fullgraph=True)
    torch.testing.assert_close(compiled(x, u), fastvae.elbo(model, x, eps=u, temperature=0.5, hard=True).elbo.sum())


def test_encode_decode_sample_reconstruct():
    model = make(seed=12)
    x = data("bernoulli", 5, seed=13)
    log_q, q = model.encode(x)
    assert log_q.shape == q.shape == (5, 3, 4)
    ref = MlpReference(model)
    torch.testing.assert_close(q, ref.q_logits(x).softmax(-1).detach(), **TOL)
    torch.testing.assert_close(log_q.exp(), q, **TOL)
    codes = F.one_hot(q.argmax(-1), 4).to(F64).reshape(5, 12)
    torch.testing.assert_close(model.reconstruct(x), ref.mean(codes).detach(), **TOL)
    g = torch.Generator().manual_seed(0)
    s = model.sample(2000, generator=g)
    assert s.shape == (2000, 12) and bool(((s > 0) & (s < 1)).all())
    # the prior codes: one-hot per variable, classes uniform (chi-square-free check: each class within 5 sd)
    c = model._uniform_codes("t", 4000, x, torch.Generator().manual_seed(1)).reshape(4000, 3, 4)
    assert bool((c.sum(-1) == 1).all())
    freq = c.mean(0)
    sd = (0.25 * 0.75 / 4000) ** 0.5
    assert bool(((freq - 0.25).abs() < 5 * sd).all()), freq


def test_checkpoint_round_trip(tmp_path):
    model = make(likelihood="gaussian", cond=3, dtype=torch.float32, seed=14)
    model.save(tmp_path / "m.pt")
    back = fastvae.VAE.load(tmp_path / "m.pt")
    assert (back.latent, back.categories, back.code_dim) == ("categorical", 4, 12)
    for a, b in zip(model.flat_parameters(), back.flat_parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("op", ["vae_categorical_elbo", "vae_categorical_elbo_backward"])
def test_categorical_ops_take_the_architecture_fields_then_temperature_and_hard(op):
    args = [a.name for a in getattr(torch.ops.fastvae, op).default._schema.arguments]
    start = args.index("params") + 1
    names = fastvae.arch.names()
    assert tuple(args[start:start + len(names)]) == names
    assert args[start + len(names):] == ["temperature", "hard"]


@pytest.mark.parametrize("latent", fastvae._C.LATENTS)
def test_every_latent_name_is_accepted_by_python_and_cpp(latent):
    k = 3 if latent == "categorical" else 0
    model = fastvae.VAE(data_dim=6, latent_dim=2, encoder_hidden=(5,), decoder_hidden=(4,), latent=latent,
                        categories=k, dtype=F64)
    x = (torch.rand(3, 6, generator=torch.Generator().manual_seed(0)) < 0.5).to(F64)
    out = fastvae.elbo(model, x, n_samples=2, generator=torch.Generator().manual_seed(1))
    assert out.elbo.shape == (3,) and bool(torch.isfinite(out.elbo).all())
    assert model.encoder_head.out_features == (6 if latent == "categorical" else 4)
    assert model.decoder[0].in_features == (6 if latent == "categorical" else 2)
