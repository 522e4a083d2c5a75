"""fastvae's C++ VAE kernels against plain PyTorch references of the four homework architectures."""
import pytest
import torch

import fastvae
from reference.vae import HOMEWORKS, Arch, MlpReference

PRESETS = ["stats305c", "ese546", "cvae_hw7", "dd2434"]
TOL = {torch.float64: dict(atol=1e-9, rtol=0), torch.float32: dict(atol=1e-4, rtol=1e-4)}


def make_batch(model, B=6, L=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(B, model.data_dim, generator=g) < 0.3).to(dtype)
    y = torch.randint(0, model.cond_dim, (B,), generator=g) if model.cond_dim else None
    eps = torch.randn(L, B, model.latent_dim, generator=g, dtype=dtype)
    return x, y, eps


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", PRESETS)
def test_forward_matches_reference(name, dtype):
    model = fastvae.VAE.from_preset(name, dtype=dtype)
    ref = MlpReference(model, name)
    x, y, eps = make_batch(model, dtype=dtype)
    mu, sigma = model.encode(x, y)
    q = ref.q(x, y)
    torch.testing.assert_close(mu, q.loc.detach(), **TOL[dtype])
    torch.testing.assert_close(sigma, q.scale.detach(), **TOL[dtype])
    z = eps[0]
    torch.testing.assert_close(model.decode(z, y, logits=True), ref.logits(z, y).detach(), **TOL[dtype])
    torch.testing.assert_close(model.decode(z, y), torch.sigmoid(ref.logits(z, y)).detach(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("estimator", ["analytic", "mc", "stl"])
@pytest.mark.parametrize("name", PRESETS)
def test_elbo_and_gradients_match_reference(name, estimator, dtype):
    model = fastvae.VAE.from_preset(name, dtype=dtype)
    ref = MlpReference(model, name)
    x, y, eps = make_batch(model, dtype=dtype)
    out = fastvae.elbo(model, x, eps=eps, y=y, estimator=estimator)
    rec, kl = ref.elbo_terms(x, eps, y, estimator)
    tol = TOL[dtype] if dtype == torch.float64 else dict(atol=2e-3, rtol=1e-4)  # sums of 784 float32 terms
    torch.testing.assert_close(out.rec, rec.detach(), **tol)
    torch.testing.assert_close(out.kl, kl.detach(), **tol)
    torch.testing.assert_close(out.elbo, (rec - kl).detach(), **tol)
    # An objective that weights the three outputs differently checks every path of the backward.
    w = torch.linspace(0.5, 1.5, x.shape[0], dtype=dtype)
    obj = lambda e, r, k: -(w * e).sum() + 0.3 * r[0] + 0.7 * k[-1]  # noqa: E731
    ours = torch.autograd.grad(obj(*out), model.flat_parameters())
    theirs = ref.grads_in_fastvae_order(obj(rec - kl, rec, kl))
    for a, b in zip(ours, theirs):
        if dtype == torch.float64:
            assert (a - b).abs().max().item() <= 1e-9
        else:
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


SMALL = {  # the presets' activations, heads and conditioning at gradcheck-friendly sizes
    "stats305c": dict(activation="relu", posterior="logstd"),
    "ese546": dict(activation="tanh", posterior="logvar"),
    "cvae_hw7": dict(activation="relu", posterior="std", mean_activation="sigmoid", scale_activation="sigmoid",
                     cond_dim=3),
    "dd2434": dict(activation="leaky_relu", negative_slope=0.2, posterior="logvar"),
}


# STL is not in this list on purpose: its gradient drops the score term, so it is not the derivative
# of the value it returns (it is checked against its autograd reference above).
@pytest.mark.parametrize("estimator", ["analytic", "mc"])
@pytest.mark.parametrize("name", PRESETS)
def test_gradcheck_float64(name, estimator):
    model = fastvae.VAE(data_dim=7, latent_dim=3, encoder_hidden=(5, 4), decoder_hidden=(4, 6),
                        dtype=torch.float64, **SMALL[name])
    x, y, eps = make_batch(model, B=4, L=2)
    params = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]

    def f(*ps):
        out = torch.ops.fastvae.vae_elbo(x, y, eps, list(ps), *model.spec().as_args(), estimator)
        return out
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6)


def test_elbo_under_torch_compile():
    model = fastvae.VAE(data_dim=7, latent_dim=3, encoder_hidden=(5,), decoder_hidden=(4,), dtype=torch.float64)
    x, _, eps = make_batch(model, B=4, L=2)
    compiled = torch.compile(lambda x, eps: fastvae.elbo(model, x, eps=eps).elbo.sum(), fullgraph=True)
    torch.testing.assert_close(compiled(x, eps), fastvae.elbo(model, x, eps=eps).elbo.sum())


def test_sampling_changes_with_n_samples_and_generator():
    model = fastvae.VAE.from_preset("stats305c", dtype=torch.float64)
    x, _, _ = make_batch(model, B=3)
    a = fastvae.elbo(model, x, n_samples=4, generator=torch.Generator().manual_seed(1))
    b = fastvae.elbo(model, x, n_samples=4, generator=torch.Generator().manual_seed(1))
    c = fastvae.elbo(model, x, n_samples=4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a.elbo, b.elbo)
    assert not torch.allclose(a.rec, c.rec)
    torch.testing.assert_close(a.kl, c.kl)  # analytic KL does not depend on the draws


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_step_matches_torch_optim(weight_decay):
    g = torch.Generator().manual_seed(3)
    shapes = [(7, 5), (5,), (3, 300), (1,)]
    ours = [torch.randn(s, generator=g) for s in shapes]
    theirs = [p.clone().requires_grad_() for p in ours]
    opt = torch.optim.Adam(theirs, lr=1e-2, betas=(0.8, 0.99), eps=1e-7, weight_decay=weight_decay)
    m = [torch.zeros_like(p) for p in ours]
    v = [torch.zeros_like(p) for p in ours]
    for step in range(1, 6):
        grads = [torch.randn(s, generator=g) for s in shapes]
        for p, gr in zip(theirs, grads):
            p.grad = gr.clone()
        opt.step()
        torch.ops.fastvae.adam_step(ours, grads, m, v, step, 1e-2, 0.8, 0.99, 1e-7, weight_decay)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b.detach(), atol=1e-6, rtol=1e-6)
        for a, b in zip(m, theirs):
            torch.testing.assert_close(a, opt.state[b]["exp_avg"], atol=1e-7, rtol=1e-6)


def test_parameters_are_linear_layout_and_state_dict_roundtrip(tmp_path):
    model = fastvae.VAE.from_preset("stats305c")
    assert model.encoder[0].weight.shape == (512, 784) and model.encoder_head.weight.shape == (4, 256)
    assert model.decoder[-1].weight.shape == (784, 512)
    path = tmp_path / "vae.pt"
    torch.save(model.state_dict(), path)
    other = fastvae.VAE.from_preset("stats305c")
    other.load_state_dict(torch.load(path))
    x = (torch.rand(3, 784) < 0.5).float()
    eps = torch.randn(1, 3, 2)
    torch.testing.assert_close(fastvae.elbo(model, x, eps=eps).elbo, fastvae.elbo(other, x, eps=eps).elbo)


def test_iwae_bound_is_between_elbo_and_tighter_with_k():
    model = fastvae.VAE(data_dim=10, latent_dim=2, encoder_hidden=(8,), decoder_hidden=(8,), dtype=torch.float64)
    x = (torch.rand(5, 10) < 0.5).double()
    g = torch.Generator().manual_seed(0)
    # k = 1: the importance weight is one Monte Carlo ELBO draw.
    eps = torch.randn(1, 5, 2, dtype=torch.float64, generator=g)
    params = [p.detach() for p in model.flat_parameters()]  # vae_iwae is not differentiable
    one = torch.ops.fastvae.vae_iwae(x, None, eps, params, *model.spec().as_args())
    torch.testing.assert_close(one, fastvae.elbo(model, x, eps=eps, estimator="mc").elbo)
    # Reference log-sum-exp over k draws with torch.distributions.
    eps = torch.randn(50, 5, 2, dtype=torch.float64, generator=g)
    ours = torch.ops.fastvae.vae_iwae(x, None, eps, params, *model.spec().as_args())
    expected, _ = MlpReference(model, Arch.of(model)).iwae(x, eps)
    torch.testing.assert_close(ours, expected, atol=1e-10, rtol=0)
    # Burda et al. 2016: E[IWAE_k] increases with k and is >= the ELBO.
    big = fastvae.log_likelihood(model, x, k=2000, generator=g).mean()
    elbo = fastvae.elbo(model, x, n_samples=2000, generator=g).elbo.mean()
    assert big > elbo


# -- pinned homework architectures (tests/reference/vae.py HOMEWORKS) ------------------------------------
@pytest.mark.parametrize("name", PRESETS)
def test_presets_match_the_pinned_homework_architectures(name):
    assert Arch.of(fastvae.VAE.from_preset(name)) == HOMEWORKS[name]


@pytest.mark.parametrize("name,override,failure", [
    ("ese546", dict(activation="relu"), "values"),
    ("dd2434", dict(negative_slope=0.01), "values"),
    ("stats305c", dict(posterior="logvar"), "values"),
    ("cvae_hw7", dict(mean_activation="identity"), "values"),
    ("cvae_hw7", dict(latent_dim=20), "shape"),
    ("stats305c", dict(encoder_hidden=(512,)), "shape"),
    ("ese546", dict(decoder_hidden=(64,)), "shape"),
])
def test_wrong_architecture_fails_against_the_pinned_reference(name, override, failure):
    model = fastvae.VAE.from_preset(name, dtype=torch.float64, **override)
    if failure == "shape":
        with pytest.raises(ValueError, match="does not fit|layers"):
            MlpReference(model, name)
        return
    ref = MlpReference(model, name)
    x, y, eps = make_batch(model)
    mu, sigma = model.encode(x, y)
    q = ref.q(x, y)
    logits = model.decode(eps[0], y, logits=True)
    assert not (torch.allclose(mu, q.loc) and torch.allclose(sigma, q.scale)
                and torch.allclose(logits, ref.logits(eps[0], y)))


# -- devices and autograd ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cond_dim", [0, 3])
def test_fully_meta_call_returns_meta_tensors_of_the_right_shapes(cond_dim):
    model = fastvae.VAE(data_dim=7, latent_dim=3, encoder_hidden=(5,), decoder_hidden=(4,), cond_dim=cond_dim,
                        dtype=torch.float64).to("meta")
    x = torch.empty(4, 7, dtype=torch.float64, device="meta")
    y = torch.zeros(4, dtype=torch.int64, device="meta") if cond_dim else None
    out = fastvae.elbo(model, x, y=y, n_samples=2)
    assert all(t.device.type == "meta" and t.shape == (4,) for t in out)
    mu, sigma = model.encode(x, y)
    assert mu.device.type == "meta" and mu.shape == sigma.shape == (4, 3)
    z = torch.empty(6, 3, dtype=torch.float64, device="meta")
    y6 = torch.zeros(6, dtype=torch.int64, device="meta") if cond_dim else None
    assert model.decode(z, y6).shape == (6, 7) and model.decode(z, y6).device.type == "meta"
    ll = fastvae.log_likelihood(model, x, k=5, y=y, batch_size=3)
    assert ll.device.type == "meta" and ll.shape == (4,)
    s = model.sample(5, y=1 if cond_dim else None)
    assert s.device.type == "meta" and s.shape == (5, 7)
    # and the elbo's backward runs on meta too (the backward op's fake kernel)
    grads = torch.autograd.grad(out.elbo.sum(), model.flat_parameters())
    assert all(g.device.type == "meta" and g.shape == p.shape for g, p in zip(grads, model.flat_parameters()))


def test_non_differentiable_ops_work_without_grad_and_do_not_claim_grad():
    model = fastvae.VAE(data_dim=7, latent_dim=3, encoder_hidden=(5,), decoder_hidden=(4,), dtype=torch.float64)
    x, _, eps = make_batch(model, B=4, L=2)
    params = model.flat_parameters()  # require grad
    assert all(p.requires_grad for p in params)
    with pytest.raises(RuntimeError, match="vae_encode is not differentiable"):
        torch.ops.fastvae.vae_encode(x, None, params, *model.spec().as_args())
    with torch.no_grad():
        mu, _ = torch.ops.fastvae.vae_encode(x, None, params, *model.spec().as_args())
        iw = torch.ops.fastvae.vae_iwae(x, None, eps, params, *model.spec().as_args())
    assert not mu.requires_grad and not iw.requires_grad
    want = MlpReference(model).q(x).loc.detach()
    torch.testing.assert_close(mu, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.encode(x)[0], want, rtol=0, atol=1e-12)  # the public API stays usable
    assert not model.decode(eps[0]).requires_grad
