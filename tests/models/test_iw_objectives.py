"""MIWAE, CIWAE and PIWAE (Rainforth et al. 2018, ICML) in the fused engine (VAE.miwae / ciwae / piwae,
op vae_iwae_bound with an objective) against plain PyTorch references written from the paper's equations with
torch.distributions (tests/reference/vae.py, ReferenceVAE.iw_objective): values and every parameter gradient in
float64 within 1e-9, for each encoder gradient estimator (reparam, STL, DReG); the special cases that reduce to
IWAE or the ELBO; gradcheck; the errors."""
import itertools

import pytest
import torch

import fastvae
from reference.vae import MlpReference

PRESETS = ["stats305c", "cvae_hw7", "dd2434"]
ESTIMATORS = ["reparam", "stl", "dreg"]
# (objective, groups M, samples per group K, beta)
OBJECTIVES = [("miwae", 3, 2, 0.0), ("miwae", 2, 1, 0.0), ("miwae", 1, 4, 0.0), ("ciwae", 1, 5, 0.3),
              ("ciwae", 1, 1, 0.7), ("ciwae", 1, 4, 1.0), ("piwae", 2, 3, 0.0), ("piwae", 4, 1, 0.0)]


def make_batch(model, B=4, L=6, dtype=torch.float64, seed=0, data_dim=None):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(B, data_dim or model.data_dim, generator=g) < 0.3).to(dtype)
    y = torch.randint(0, model.cond_dim, (B,), generator=g) if getattr(model, "cond_dim", 0) else None
    eps = torch.randn(L, B, model.latent_dim, generator=g, dtype=dtype)
    return x, y, eps


def bound_of(model, x, eps, y, objective, groups, beta, estimator):
    if objective == "ciwae":
        return model.ciwae(x, beta=beta, eps=eps, y=y, estimator=estimator)
    return getattr(model, objective)(x, groups, eps=eps, y=y, estimator=estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("objective, M, K, beta", OBJECTIVES, ids=[f"{o}-M{m}-K{k}-b{b}" for o, m, k, b in OBJECTIVES])
@pytest.mark.parametrize("name", PRESETS)
def test_value_and_gradients_match_reference(name, objective, M, K, beta, estimator):
    model = fastvae.VAE.from_preset(name, dtype=torch.float64)
    ref = MlpReference(model, name)
    x, y, eps = make_batch(model, L=M * K, seed=M * 10 + K)
    out = bound_of(model, x, eps, y, objective, M, beta, estimator)
    value, enc_surrogate, _ = ref.iw_objective(x, eps, objective, M, beta, y, estimator)
    torch.testing.assert_close(out.detach(), value, rtol=0, atol=1e-9)
    u = torch.linspace(0.5, 1.5, x.shape[0], dtype=torch.float64)  # uneven upstream weights per image
    ours = torch.autograd.grad((u * out).sum(), model.flat_parameters())
    theirs_enc = ref.grads_in_fastvae_order((u * enc_surrogate).sum())
    dec_surrogate = ref.iw_objective(x, eps, objective, M, beta, y, estimator)[2]  # a graph of its own
    theirs_dec = ref.grads_in_fastvae_order((u * dec_surrogate).sum())
    for i, (a, be, bd) in enumerate(zip(ours, theirs_enc, theirs_dec)):
        if estimator == "dreg":  # the encoder surrogate holds the decoder fixed, the decoder's the codes
            b = be + bd
        else:  # the encoder's parameters from the encoder's objective, the decoder's from the decoder's
            b = be if i < ref.n_encoder else bd
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9, msg=lambda m: f"parameter {i}: {m}")


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_special_cases_are_iwae_and_the_elbo(estimator):
    model = fastvae.VAE.from_preset("stats305c", dtype=torch.float64)
    x, _, eps = make_batch(model, L=6)
    params = model.flat_parameters()

    def value_and_grads(out):
        return out.detach(), torch.autograd.grad(out.sum(), params)

    iwae = value_and_grads(model.iwae(x, eps=eps, estimator=estimator))
    same = [value_and_grads(model.miwae(x, 1, eps=eps, estimator=estimator)),
            value_and_grads(model.piwae(x, 1, eps=eps, estimator=estimator)),
            value_and_grads(model.ciwae(x, beta=0.0, eps=eps, estimator=estimator))]
    for v, g in same:  # the same computation: bit for bit
        assert torch.equal(v, iwae[0]) and all(torch.equal(a, b) for a, b in zip(g, iwae[1]))
    # MIWAE(M, 1) is the Monte Carlo ELBO over M samples, CIWAE(1) the same; the value of PIWAE(M, K) is IWAE(M K)
    mc = fastvae.elbo(model, x, eps=eps, estimator="mc").elbo
    torch.testing.assert_close(model.miwae(x, 6, eps=eps).detach(), mc.detach(), rtol=0, atol=1e-9)
    torch.testing.assert_close(model.ciwae(x, beta=1.0, eps=eps).detach(), mc.detach(), rtol=0, atol=1e-9)
    assert torch.equal(model.piwae(x, 3, eps=eps).detach(), iwae[0])


def test_miwae_between_the_elbo_and_iwae():
    # Jensen: MIWAE(M, K) <= IWAE(M K) per image, and its expectation is above the ELBO's
    model = fastvae.VAE.from_preset("stats305c", dtype=torch.float64)
    x, _, eps = make_batch(model, B=8, L=12)
    iwae = model.iwae(x, eps=eps).detach()
    miwae = model.miwae(x, 3, eps=eps).detach()
    assert (miwae <= iwae + 1e-12).all()
    assert (miwae < iwae).any()


@pytest.mark.parametrize("objective, groups, beta", [("miwae", 2, 0.0), ("ciwae", 1, 0.4)])
def test_gradcheck_float64(objective, groups, beta):
    # reparam is the derivative of the value for MIWAE and CIWAE (PIWAE's gradient is not one function's)
    torch.manual_seed(0)
    model = fastvae.VAE(data_dim=7, latent_dim=3, encoder_hidden=(5,), decoder_hidden=(4,), dtype=torch.float64)
    x, y, eps = make_batch(model, B=3, L=4)
    params = [p.detach().clone().requires_grad_() for p in model.flat_parameters()]

    def f(*ps):
        return torch.ops.fastvae.vae_iwae_bound(x, y, eps, list(ps), *model.spec().as_args(), "reparam", objective,
                                                groups, beta)

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6)


def test_trains_with_fit():
    images = torch.randint(0, 256, (64, 7), dtype=torch.uint8)
    from torch import nn
    kinds = (lambda: fastvae.VAE(data_dim=7, latent_dim=2, encoder_hidden=(5,), decoder_hidden=(5,)),
             lambda: fastvae.VAE.from_networks(nn.Linear(7, 4), nn.Linear(2, 7), 2))
    for make, opts in itertools.product(kinds, (dict(objective="miwae", groups=2, k=2),
                                                dict(objective="ciwae", k=3, ciwae_beta=0.25),
                                                dict(objective="piwae", groups=3, k=2, iwae_estimator="dreg"))):
        model = make()
        before = [p.detach().clone() for p in model.parameters()]
        hist = model.fit(images, fastvae.TrainOptions(epochs=2, batch_size=16, **opts), progress=False)
        assert len(hist.train_elbo) == 2 and all(torch.isfinite(torch.tensor(hist.train_elbo)))
        assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


X = (torch.rand(3, 7) > 0.5).double()
EPS = torch.randn(6, 3, 2, dtype=torch.float64)
MODEL = fastvae.VAE(data_dim=7, latent_dim=2, encoder_hidden=(5,), decoder_hidden=(5,), dtype=torch.float64)
ERRORS = [
    ("miwae-groups-0", lambda: MODEL.miwae(X, 0, eps=EPS), ValueError, "groups must be"),
    ("miwae-groups-float", lambda: MODEL.miwae(X, 1.5, eps=EPS), TypeError, "groups must be"),
    ("miwae-groups-bool", lambda: MODEL.miwae(X, True, eps=EPS), TypeError, "groups must be"),
    ("miwae-indivisible", lambda: MODEL.miwae(X, 4, eps=EPS), ValueError, "do not split into groups=4"),
    ("piwae-indivisible", lambda: MODEL.piwae(X, 5, eps=EPS), ValueError, "do not split into groups=5"),
    ("miwae-k-0", lambda: MODEL.miwae(X, 2, 0), ValueError, "k must be"),
    ("miwae-eps-0d", lambda: MODEL.miwae(X, 2, eps=torch.tensor(1.0, dtype=torch.float64)), ValueError,
     "eps must have shape"),
    ("networks-miwae-indivisible", lambda: fastvae.VAE.from_networks(
        torch.nn.Linear(7, 4).double(), torch.nn.Linear(2, 7).double(), 2).miwae(X, 4, eps=EPS), ValueError,
     "NetworkVAE.miwae: eps holds 6 samples per image, which do not split into groups=4"),
    ("ciwae-beta-high", lambda: MODEL.ciwae(X, beta=1.5, eps=EPS), ValueError, "beta must be"),
    ("ciwae-beta-nan", lambda: MODEL.ciwae(X, beta=float("nan"), eps=EPS), ValueError, "beta must be"),
    ("ciwae-beta-str", lambda: MODEL.ciwae(X, beta="0.5", eps=EPS), TypeError, "beta must be"),
    ("miwae-estimator", lambda: MODEL.miwae(X, 2, eps=EPS, estimator="analytic"), ValueError, "estimator"),
    ("op-objective-elbo", lambda: torch.ops.fastvae.vae_iwae_bound(X, None, EPS, MODEL.flat_parameters(),
                                                                   *MODEL.spec().as_args(), "reparam", "elbo", 1, 0.0),
     RuntimeError, "objective 'elbo' is not an importance-weighted bound"),
    ("op-objective-unknown", lambda: torch.ops.fastvae.vae_iwae_bound(
        X, None, EPS, MODEL.flat_parameters(), *MODEL.spec().as_args(), "reparam", "vimco", 1, 0.0),
     RuntimeError, "unknown objective 'vimco'"),
    ("op-groups-iwae", lambda: torch.ops.fastvae.vae_iwae_bound(
        X, None, EPS, MODEL.flat_parameters(), *MODEL.spec().as_args(), "reparam", "iwae", 2, 0.0),
     RuntimeError, "groups applies to objectives 'miwae' and 'piwae'"),
    ("op-beta-miwae", lambda: torch.ops.fastvae.vae_iwae_bound(
        X, None, EPS, MODEL.flat_parameters(), *MODEL.spec().as_args(), "reparam", "miwae", 2, 0.5),
     RuntimeError, "beta applies to objective 'ciwae'"),
    ("op-indivisible", lambda: torch.ops.fastvae.vae_iwae_bound(
        X, None, EPS, MODEL.flat_parameters(), *MODEL.spec().as_args(), "reparam", "miwae", 4, 0.0),
     RuntimeError, "do not split into 4 groups"),
    ("options-groups-iwae", lambda: fastvae.TrainOptions(objective="iwae", groups=2).validate(), ValueError,
     "groups applies to objectives 'miwae' and 'piwae' only"),
    ("options-beta-miwae", lambda: fastvae.TrainOptions(objective="miwae", ciwae_beta=0.1).validate(), ValueError,
     "ciwae_beta applies to objective='ciwae' only"),
    ("options-beta-range", lambda: fastvae.TrainOptions(objective="ciwae", ciwae_beta=2.0).validate(), ValueError,
     "ciwae_beta must be"),
    ("options-objective", lambda: fastvae.TrainOptions(objective="vimco").validate(), ValueError, "objective"),
]


@pytest.mark.parametrize("call, error, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("objective, M, K, beta", OBJECTIVES[::2], ids=[f"{o}-M{m}-K{k}-b{b}" for o, m, k, b in
                                                                          OBJECTIVES[::2]])
def test_networks_match_reference(objective, M, K, beta, estimator):
    # NetworkVAE (the user's networks around fastvae.heads) trains the same objectives with the same gradients
    from torch import nn
    from reference.vae import NetworkReference

    def nets():
        torch.manual_seed(3)
        return (nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 4)).double(),
                nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 12)).double())

    model, ref = fastvae.VAE.from_networks(*nets(), 2), NetworkReference(*nets(), 2)
    x, _, eps = make_batch(model, L=M * K, seed=M + K, data_dim=12)
    out = bound_of(model, x, eps, None, objective, M, beta, estimator)
    value, enc_surrogate, _ = ref.iw_objective(x, eps, objective, M, beta, None, estimator)
    torch.testing.assert_close(out.detach(), value, rtol=0, atol=1e-9)
    u = torch.linspace(0.5, 1.5, x.shape[0], dtype=torch.float64)
    ours = torch.autograd.grad((u * out).sum(), model.flat_parameters())
    params = list(ref.parameters())
    n_enc = len(list(ref.encoder.parameters()))

    def grads(objective):
        g = torch.autograd.grad((u * objective).sum(), params, allow_unused=True)
        return [torch.zeros_like(p) if d is None else d for d, p in zip(g, params)]

    theirs_enc = grads(enc_surrogate)
    theirs_dec = grads(ref.iw_objective(x, eps, objective, M, beta, None, estimator)[2])
    for i, (a, be, bd) in enumerate(zip(ours, theirs_enc, theirs_dec)):
        b = be + bd if estimator == "dreg" else (be if i < n_enc else bd)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9, msg=lambda m: f"parameter {i}: {m}")
