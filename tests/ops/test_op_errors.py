"""Table of bad inputs to the samplers (fastvae.gumbel_softmax, categorical_rsample, exponential_rsample) and to
the torch.ops.fastvae ops called directly. Each row is (call, expected exception type, message fragment): the
call must raise exactly that kind of error with that fragment, never return garbage, coerce silently or crash
(rows found as in tests/models/test_model_errors.py)."""
import dataclasses
import re

import pytest
import torch

import fastvae

ops = torch.ops.fastvae
NAN, INF = float("nan"), float("inf")
META = torch.device("meta")

ROWS = []


def row(name, call, exc, match):
    ROWS.append(pytest.param(call, exc, match, id=name))


# -- shared fixtures (small where the size does not matter) ------------------------------------------------
VAE = fastvae.VAE.from_preset("stats305c")  # 784 -> 2, float32, unconditional
CVAE = fastvae.VAE.from_preset("cvae_hw7")  # conditional on 10 classes, latent 40
SMALL = fastvae.VAE(7, 3, (5,), (4,), dtype=torch.float64)
X = (torch.rand(4, 784, generator=torch.Generator().manual_seed(0)) < 0.5).float()
Y = torch.tensor([0, 1, 2, 3])
XS = (torch.rand(4, 7, generator=torch.Generator().manual_seed(1)) < 0.5).double()
EPS = torch.zeros(2, 4, 3, dtype=torch.float64)
PS = [p.detach() for p in SMALL.flat_parameters()]
ARCH = SMALL.spec().as_args()


def arch(**changes):
    """SMALL's architecture arguments with some fields replaced (by name)."""
    return dataclasses.replace(SMALL.spec(), **changes).as_args()


def with_entry(t, index, value):
    t = t.clone()
    t[index] = value
    return t


def meta_model():
    return fastvae.VAE(7, 3, (5,), (4,), dtype=torch.float64).to("meta")


def nan_model():
    m = fastvae.VAE(7, 3, (5,), (4,), dtype=torch.float64)
    with torch.no_grad():
        m.decoder[0].weight[0, 0] = NAN
    return m


def grad_params():
    return [p.detach().clone().requires_grad_() for p in PS]



# -- samplers ---------------------------------------------------------------------------------------------
GS, CAT, EXP = fastvae.gumbel_softmax, fastvae.categorical_rsample, fastvae.exponential_rsample
L = torch.zeros(2, 3)
for f, name in ((GS, "gumbel_softmax"), (CAT, "categorical_rsample")):
    for bad, exc, msg in [(0.0, ValueError, "tau must be > 0"), (-1.0, ValueError, "tau must be > 0"),
                          (NAN, ValueError, "tau must be a finite"), (INF, ValueError, "tau must be a finite"),
                          ("1", TypeError, "tau must be a real number"), (True, TypeError, "real number"),
                          (None, TypeError, "real number")]:
        row(f"{name}-tau={bad!r}", lambda f=f, b=bad: f(L, tau=b), exc, msg)
    for bad, exc, msg in [(1.5, TypeError, "dim must be an integer"), ("0", TypeError, "dim must be an integer"),
                          (None, TypeError, "dim must be an integer"), (2, ValueError, r"dim must lie in \[-2, 1\]"),
                          (-3, ValueError, r"dim must lie in")]:
        row(f"{name}-dim={bad!r}", lambda f=f, b=bad: f(L, dim=b), exc, msg)
    row(f"{name}-logits-list", lambda f=f: f([[0.0, 1.0]]), TypeError, "logits must be a torch.Tensor")
    row(f"{name}-logits-int", lambda f=f: f(L.long()), TypeError, "logits must have dtype")
    row(f"{name}-logits-bool", lambda f=f: f(L.bool()), TypeError, "logits must have dtype")
    row(f"{name}-logits-half", lambda f=f: f(L.half()), TypeError, "logits must have dtype")
    row(f"{name}-empty-class-dim", lambda f=f: f(torch.zeros(2, 0)), ValueError, "class dimension -1 is empty")
    row(f"{name}-logits-0d", lambda f=f: f(torch.tensor(0.0)), ValueError, "at least one dimension")
    row(f"{name}-logits-nan", lambda f=f: f(with_entry(L, (0, 1), NAN)), RuntimeError, "logits contain NaN")
    row(f"{name}-logits-+inf", lambda f=f: f(with_entry(L, (0, 1), INF)), RuntimeError, r"\+inf")
    row(f"{name}-logits-row-all--inf", lambda f=f: f(with_entry(L, 1, -INF)), RuntimeError, "all -inf")
    row(f"{name}-neither", lambda f=f: f(), ValueError, "exactly one of logits and probs")
    row(f"{name}-both", lambda f=f: f(L, probs=L.softmax(-1)), ValueError, "exactly one of logits and probs")
    row(f"{name}-probs-int", lambda f=f: f(probs=torch.tensor([0, 1])), TypeError, "probs must have dtype")
    row(f"{name}-probs-list", lambda f=f: f(probs=[0.5, 0.5]), TypeError, "probs must be a torch.Tensor")
    row(f"{name}-probs-sum", lambda f=f: f(probs=torch.tensor([0.2, 0.2, 0.2])), ValueError, "sum to one")
    row(f"{name}-probs-negative", lambda f=f: f(probs=torch.tensor([0.5, -0.1, 0.6])), ValueError, "non-negative")
    row(f"{name}-probs-nan", lambda f=f: f(probs=torch.tensor([0.5, NAN, 0.5])), ValueError, "finite")
    row(f"{name}-probs-inf", lambda f=f: f(probs=torch.tensor([INF, 0.5])), ValueError, "finite")
    row(f"{name}-probs-dim", lambda f=f: f(probs=torch.tensor([0.5, 0.5]), dim=1), ValueError, "dim must lie in")
    row(f"{name}-generator", lambda f=f: f(L, generator=123), TypeError, "generator must be a torch.Generator")
    row(f"{name}-noise-list", lambda f=f: f(L, noise=[[0.5] * 3] * 2), TypeError, "noise must be a torch.Tensor")
    row(f"{name}-noise-meta", lambda f=f: f(L, noise=torch.full((2, 3), 0.5, device="meta")), ValueError,
        "share one device")
    row(f"{name}-logits-meta-noise-cpu", lambda f=f: f(L.to("meta"), noise=torch.full((2, 3), 0.5)),
        ValueError, "share one device")
for f, name in ((GS, "gumbel_softmax"), (lambda *a, **k: CAT(*a, one_hot=True, **k), "categorical_rsample")):
    for bad, msg in [(0.0, "strictly inside"), (1.0, "strictly inside"), (NAN, "strictly inside"),
                     (-0.5, "strictly inside"), (1.5, "strictly inside")]:
        row(f"{name}-noise={bad!r}", lambda f=f, b=bad: f(L, noise=with_entry(torch.full((2, 3), 0.5), (1, 2), b)),
            RuntimeError, msg)
    row(f"{name}-noise-shape", lambda f=f: f(L, noise=torch.full((3, 2), 0.5)), RuntimeError, "shape of logits")
    row(f"{name}-noise-dtype", lambda f=f: f(L, noise=torch.full((2, 3), 0.5, dtype=torch.float64)), RuntimeError,
        "dtype and device")
row("gumbel_softmax-hard-str", lambda: GS(L, hard="yes"), TypeError, "hard must be True or False")
row("gumbel_softmax-hard-int", lambda: GS(L, hard=1), TypeError, "hard must be True or False")
row("gumbel_softmax-huge", lambda: GS(torch.zeros(1, 1).expand(2 ** 16, 2 ** 15)), ValueError, "exceeds the limit")
for bad, exc, msg in [((2.5,), TypeError, r"sample_shape\[0\] must be an integer"),
                      ((2, 2.0), TypeError, r"sample_shape\[1\] must be an integer"),
                      ((True,), TypeError, "must be an integer"), ((-1,), ValueError, ">= 0"),
                      (3, TypeError, "sequence of integers"), ("ab", TypeError, "sequence of integers"),
                      (None, TypeError, "sequence of integers"), ((10 ** 9,), ValueError, "exceeds the limit"),
                      ((10 ** 5, 10 ** 5), ValueError, "exceeds the limit")]:
    row(f"categorical_rsample-sample_shape={bad!r}", lambda b=bad: CAT(L, sample_shape=b), exc, msg)
row("categorical_rsample-one_hot-str", lambda: CAT(L, one_hot="no"), TypeError, "one_hot must be True or False")
row("categorical_rsample-noise-shape", lambda: CAT(L, sample_shape=(4,), noise=torch.full((2, 3), 0.5)),
    RuntimeError, "shape of logits")
R = torch.ones(3)
for bad, exc, msg in [("1.0", TypeError, "rate must be a real number"), (None, TypeError, "real number"),
                      (True, TypeError, "real number"), (1j, TypeError, "real number"),
                      ([1.0, 2.0], TypeError, "real number"), (0.0, RuntimeError, "positive and finite"),
                      (-1.0, RuntimeError, "positive and finite"), (NAN, ValueError, "rate must be a finite number"),
                      (INF, RuntimeError, "positive and finite"), (0, RuntimeError, "positive and finite")]:
    row(f"exponential_rsample-rate={bad!r}", lambda b=bad: EXP(b), exc, msg)
for bad, msg in [([1.0, 0.0], "positive and finite"), ([1.0, -2.0], "positive and finite"),
                 ([NAN], "positive and finite"), ([INF], "positive and finite"), ([1e-40], "overflow")]:
    row(f"exponential_rsample-rate-tensor={bad!r}", lambda b=bad: EXP(torch.tensor(b)), RuntimeError, msg)
row("exponential_rsample-rate-float64-tiny", lambda: EXP(torch.tensor([1e-310], dtype=torch.float64)), RuntimeError,
    "overflow")
for dt in (torch.int64, torch.bool, torch.float16, torch.complex64):
    row(f"exponential_rsample-rate-{dt}", lambda d=dt: EXP(R.to(d)), TypeError, "rate must have dtype")
for bad, exc, msg in [((2.5,), TypeError, "must be an integer"), ((-1,), ValueError, ">= 0"),
                      (2, TypeError, "sequence of integers"), ((False,), TypeError, "must be an integer"),
                      ((10 ** 10,), ValueError, "exceeds the limit"), ((10 ** 5, 10 ** 5), ValueError, "exceeds")]:
    row(f"exponential_rsample-sample_shape={bad!r}", lambda b=bad: EXP(R, b), exc, msg)
for bad, msg in [(0.0, "strictly inside"), (1.0, "strictly inside"), (NAN, "strictly inside"),
                 (2.0, "strictly inside")]:
    row(f"exponential_rsample-noise={bad!r}", lambda b=bad: EXP(R, noise=with_entry(torch.full((3,), 0.5), 1, b)),
        RuntimeError, msg)
row("exponential_rsample-noise-shape", lambda: EXP(R, (2,), noise=torch.full((3,), 0.5)), RuntimeError,
    "noise must have shape")
row("exponential_rsample-noise-dtype", lambda: EXP(R, noise=torch.full((3,), 0.5, dtype=torch.float64)),
    RuntimeError, "dtype and device")
row("exponential_rsample-noise-list", lambda: EXP(R, noise=[0.5] * 3), TypeError, "noise must be a torch.Tensor")
row("exponential_rsample-noise-meta", lambda: EXP(R, noise=torch.full((3,), 0.5, device="meta")), ValueError,
    "share one device")
row("exponential_rsample-rate-meta-noise-cpu", lambda: EXP(R.to("meta"), noise=torch.full((3,), 0.5)), ValueError,
    "share one device")
row("exponential_rsample-generator", lambda: EXP(R, generator="g"), TypeError, "generator must be a torch.Generator")

# -- torch.ops.fastvae called directly ---------------------------------------------------------------------
row("op-vae_elbo-arch-activation", lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(activation="gelu"), "analytic"),
    RuntimeError, r"unknown activation 'gelu'; choose one of \['identity', 'relu'")
row("op-vae_elbo-arch-mean-activation",
    lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(mean_activation="Relu"), "analytic"), RuntimeError,
    "unknown mean_activation 'Relu'")
row("op-vae_elbo-arch-posterior", lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(posterior="var"), "analytic"),
    RuntimeError, "unknown posterior 'var'")
row("op-vae_elbo-arch-layer-size", lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(encoder_hidden=(0,)), "analytic"),
    RuntimeError, "layer sizes must be positive")
row("op-vae_elbo-arch-latent", lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(latent_dim=0), "analytic"),
    RuntimeError, "latent_dim must be positive")
row("op-vae_elbo-params-count", lambda: ops.vae_elbo(XS, None, EPS, PS[:-1], *ARCH, "analytic"), RuntimeError,
    "parameter tensors")
row("op-vae_elbo-params-shape", lambda: ops.vae_elbo(XS, None, EPS, [PS[0].T.contiguous()] + PS[1:], *ARCH, "analytic"),
    RuntimeError, r"encoder layer 0 weight must have shape \[5, 7\]")
row("op-vae_elbo-params-dtype", lambda: ops.vae_elbo(XS, None, EPS, [p.float() for p in PS], *ARCH, "analytic"),
    RuntimeError, "parameters must be")
row("op-vae_elbo-params-noncontig", lambda: ops.vae_elbo(XS, None, EPS, [PS[0].T.contiguous().T] + PS[1:], *ARCH,
                                                         "analytic"), RuntimeError, "contiguous")
row("op-vae_elbo-estimator", lambda: ops.vae_elbo(XS, None, EPS, PS, *ARCH, "iwae"), RuntimeError,
    "unknown estimator 'iwae'")
row("op-vae_elbo-slope-negative", lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(negative_slope=-1.0), "analytic"),
    RuntimeError, "slope")
row("op-vae_elbo-slope-inf", lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(negative_slope=INF), "analytic"),
    RuntimeError, "slope must be finite")
row("op-vae_elbo-slope-nan", lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(negative_slope=NAN), "analytic"),
    RuntimeError, "slope is NaN")
row("op-vae_elbo-x-int", lambda: ops.vae_elbo(XS.long(), None, EPS, PS, *ARCH, "analytic"), RuntimeError,
    "float32 or float64")
row("op-vae_elbo-x-1d", lambda: ops.vae_elbo(XS[0], None, EPS, PS, *ARCH, "analytic"), RuntimeError, "of shape")
row("op-vae_elbo-eps-shape", lambda: ops.vae_elbo(XS, None, EPS[:, :3], PS, *ARCH, "analytic"), RuntimeError,
    "eps must have shape")
row("op-vae_elbo-y-unconditional", lambda: ops.vae_elbo(XS, Y, EPS, PS, *ARCH, "analytic"), RuntimeError,
    "unconditional")
for name, args in [("x", lambda: (XS.to("meta"), None, EPS, PS)), ("eps", lambda: (XS, None, EPS.to("meta"), PS)),
                   ("params", lambda: (XS, None, EPS, PS[:-1] + [PS[-1].to("meta")]))]:
    row(f"op-vae_elbo-meta-{name}", lambda a=args: ops.vae_elbo(*a(), *ARCH, "analytic"), ValueError,
        "fastvae::vae_elbo: tensors must share one device")
row("op-vae_encode-meta-x", lambda: ops.vae_encode(XS.to("meta"), None, PS, *ARCH), ValueError,
    "fastvae::vae_encode: tensors must share one device")
row("op-vae_decode-meta-params", lambda: ops.vae_decode(EPS[0], None, [p.to("meta") for p in PS], *ARCH),
    ValueError, "fastvae::vae_decode: tensors must share one device")
row("op-vae_iwae-meta-eps", lambda: ops.vae_iwae(XS, None, EPS.to("meta"), PS, *ARCH), ValueError,
    "fastvae::vae_iwae: tensors must share one device")
row("op-vae_iwae-eps-L0", lambda: ops.vae_iwae(XS, None, EPS[:0], PS, *ARCH), RuntimeError,
    "at least one Monte Carlo sample")
W = torch.ones(4, dtype=torch.float64)
row("op-vae_elbo_backward-weights-shape", lambda: ops.vae_elbo_backward(W[:3], W, XS, None, EPS, PS, *ARCH, "analytic"),
    RuntimeError, "per-image weights")
row("op-vae_elbo_backward-weights-int", lambda: ops.vae_elbo_backward(W.long(), W, XS, None, EPS, PS, *ARCH,
                                                                                       "analytic"),
    RuntimeError, "floating point")
row("op-vae_elbo_backward-meta", lambda: ops.vae_elbo_backward(W.to("meta"), W, XS, None, EPS, PS, *ARCH, "analytic"),
    ValueError, "fastvae::vae_elbo_backward: tensors must share one device")
for op_name, call in [
        ("vae_encode", lambda: ops.vae_encode(XS, None, grad_params(), *ARCH)),
        ("vae_decode", lambda: ops.vae_decode(EPS[0], None, grad_params(), *ARCH)),
        ("vae_iwae", lambda: ops.vae_iwae(XS, None, EPS, grad_params(), *ARCH)),
        ("cavi_update_lambda", lambda: ops.cavi_update_lambda(torch.ones(2, 5, dtype=torch.float64,
                                                                          requires_grad=True), 1.0, 1.0))]:
    row(f"op-{op_name}-requires-grad", call, RuntimeError, f"fastvae::{op_name} is not differentiable")
P3 = [torch.zeros(3)]
row("op-adam_step-lengths", lambda: ops.adam_step(P3, [], P3, P3, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0), RuntimeError,
    "equal lengths")
row("op-adam_step-shape", lambda: ops.adam_step(P3, [torch.zeros(4)], [torch.zeros(3)], [torch.zeros(3)], 1, 1e-3,
                                                0.9, 0.999, 1e-8, 0.0), RuntimeError, "shape")
row("op-adam_step-step0", lambda: ops.adam_step(P3, [torch.zeros(3)], [torch.zeros(3)], [torch.zeros(3)], 0, 1e-3,
                                                0.9, 0.999, 1e-8, 0.0), RuntimeError, "step counts from 1")
row("op-adam_step-beta1", lambda: ops.adam_step(P3, [torch.zeros(3)], [torch.zeros(3)], [torch.zeros(3)], 1, 1e-3,
                                                1.0, 0.999, 1e-8, 0.0), RuntimeError, "betas")
row("op-adam_step-lr-nan", lambda: ops.adam_step(P3, [torch.zeros(3)], [torch.zeros(3)], [torch.zeros(3)], 1, NAN,
                                                 0.9, 0.999, 1e-8, 0.0), RuntimeError, "learning rate")
row("op-adam_step-meta", lambda: ops.adam_step(P3, [torch.zeros(3, device="meta")], [torch.zeros(3)],
                                               [torch.zeros(3)], 1, 1e-3, 0.9, 0.999, 1e-8, 0.0), ValueError,
    "fastvae::adam_step: tensors must share one device")
SEED = torch.tensor(0)  # the samplers' seed argument: a 0-d int64 tensor
row("op-gumbel_softmax_fwd-tau0", lambda: ops.gumbel_softmax_fwd(L, None, 0.0, -1, SEED), RuntimeError, "tau")
row("op-gumbel_softmax_fwd-dim", lambda: ops.gumbel_softmax_fwd(L, None, 1.0, 2, SEED), RuntimeError, "out of range")
row("op-gumbel_softmax_fwd-int", lambda: ops.gumbel_softmax_fwd(L.long(), None, 1.0, -1, SEED), RuntimeError,
    "float32 or float64")
row("op-gumbel_softmax_fwd-0d", lambda: ops.gumbel_softmax_fwd(torch.tensor(0.0), None, 1.0, 0, SEED), RuntimeError,
    "at least one dimension")
row("op-gumbel_softmax_fwd-meta-noise", lambda: ops.gumbel_softmax_fwd(L, torch.full((2, 3), 0.5, device="meta"),
                                                                       1.0, -1, None), ValueError, "share one device")
row("op-gumbel_softmax_fwd-no-seed", lambda: ops.gumbel_softmax_fwd(L, None, 1.0, -1, None), RuntimeError,
    "give exactly one of noise")
row("op-gumbel_softmax_fwd-noise-and-seed", lambda: ops.gumbel_softmax_fwd(L, torch.full((2, 3), 0.5), 1.0, -1, SEED),
    RuntimeError, "give exactly one of noise")
row("op-gumbel_softmax_fwd-seed-1d", lambda: ops.gumbel_softmax_fwd(L, None, 1.0, -1, SEED.reshape(1)), RuntimeError,
    "seed must be a 0-d int64 CPU tensor, got 1-d")
row("op-gumbel_softmax_fwd-seed-int32", lambda: ops.gumbel_softmax_fwd(L, None, 1.0, -1, SEED.int()), RuntimeError,
    "seed must be a 0-d int64 CPU tensor, got 0-d Int")
row("op-_gumbel_softmax_backward-shape", lambda: ops._gumbel_softmax_backward(L[:1], L, 1.0, -1), RuntimeError,
    "grad shape")
row("op-_gumbel_softmax_backward-dtype", lambda: ops._gumbel_softmax_backward(L.double(), L, 1.0, -1), RuntimeError,
    "dtype")
row("op-_gumbel_softmax_backward-tau", lambda: ops._gumbel_softmax_backward(L, L, -1.0, -1), RuntimeError,
    "tau must be > 0")
row("op-_gumbel_softmax_backward-meta", lambda: ops._gumbel_softmax_backward(L.to("meta"), L, 1.0, -1), ValueError,
    "fastvae::_gumbel_softmax_backward: tensors must share one device")
row("op-one_hot_argmax-int", lambda: ops.one_hot_argmax(L.long(), -1), RuntimeError, "float32 or float64")
row("op-one_hot_argmax-dim", lambda: ops.one_hot_argmax(L, 5), RuntimeError, "out of range")
row("op-one_hot_argmax-0d", lambda: ops.one_hot_argmax(torch.tensor(1.0), 0), RuntimeError, "at least one dimension")
row("op-exponential_fwd-negative-shape", lambda: ops.exponential_fwd(R, None, [-1], SEED), RuntimeError,
    "non-negative")
row("op-exponential_fwd-int", lambda: ops.exponential_fwd(R.long(), None, [], SEED), RuntimeError,
    "float32 or float64")
row("op-exponential_fwd-meta-noise", lambda: ops.exponential_fwd(R, torch.full((3,), 0.5, device="meta"), [], None),
    ValueError, "fastvae::exponential_fwd: tensors must share one device")
row("op-exponential_fwd-meta-seed", lambda: ops.exponential_fwd(R, None, [], SEED.to("meta")), ValueError,
    "fastvae::exponential_fwd: tensors must share one device")
row("op-exponential_fwd-no-seed", lambda: ops.exponential_fwd(R, None, [], None), RuntimeError,
    "give exactly one of noise")
row("op-exponential_fwd-seed-float", lambda: ops.exponential_fwd(R, None, [], SEED.double()), RuntimeError,
    "seed must be a 0-d int64 CPU tensor")
row("op-_exponential_backward-shape", lambda: ops._exponential_backward(R[:2], R, R), RuntimeError, "grad shape")
row("op-_exponential_backward-dtype", lambda: ops._exponential_backward(R.double(), R.double(), R), RuntimeError,
    "share a dtype")
row("op-_exponential_backward-int", lambda: ops._exponential_backward(R.long(), R.long(), R.long()), RuntimeError,
    "float32 or float64")
row("op-_exponential_backward-z-shape", lambda: ops._exponential_backward(torch.ones(2), torch.ones(2), R),
    RuntimeError, "sample_shape \\+ rate.shape")
row("op-_exponential_backward-meta", lambda: ops._exponential_backward(R, R.to("meta"), R), ValueError,
    "share one device")
ST = torch.ones(2, 5, dtype=torch.float64)
row("op-cavi_elbo-meta-mixed", lambda: ops.cavi_elbo(ST, torch.zeros((), dtype=torch.float64, device="meta"), 0.0,
                                                     torch.zeros(2, dtype=torch.float64), torch.zeros(2, 2),
                                                     torch.ones(2), torch.ones(2), torch.ones(2), 1.0, [0.0, 0.0],
                                                     1.0, 1.0, 1.0), ValueError,
    "fastvae::cavi_elbo: tensors must share one device")
row("op-cavi_responsibilities-meta-mixed",
    lambda: ops.cavi_responsibilities(*[torch.ones(3, 2, dtype=torch.float64, device="meta")] +
                                      [torch.ones(3, dtype=torch.float64)] * 6, 1.0), ValueError,
    "fastvae::cavi_responsibilities: tensors must share one device")

# Likelihoods (issue 9 item 1): unknown names on both sides, data that the likelihood cannot take.
CBM = fastvae.VAE(7, 3, (5,), (4,), dtype=torch.float64, likelihood="continuous_bernoulli")
XI = torch.rand(4, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
row("op-vae_elbo-arch-likelihood", lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(likelihood="gauss"), "analytic"),
    RuntimeError, re.escape("unknown likelihood 'gauss'; choose one of [" +
                            ", ".join(f"'{n}'" for n in fastvae._C.LIKELIHOODS) + "]"))  # the C++ table, in order
row("op-vae_elbo-arch-gaussian-sigma", lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(gaussian_sigma=-1.0), "analytic"),
    RuntimeError, "gaussian_sigma must be finite and > 0")
# The decoder mean op (the likelihood table's mean), called directly.
row("op-likelihood_mean-unknown", lambda: ops.likelihood_mean(XS, "gauss", 1.0, "fixed"), RuntimeError,
    "fastvae: likelihood_mean: unknown likelihood 'gauss'; choose one of")
row("op-likelihood_mean-scale-unknown", lambda: ops.likelihood_mean(XS, "gaussian", 1.0, "learnt"), RuntimeError,
    "fastvae: likelihood_mean: unknown gaussian_scale 'learnt'")
row("op-likelihood_mean-predicted-bernoulli", lambda: ops.likelihood_mean(XS, "bernoulli", 1.0, "predicted"),
    RuntimeError, "gaussian_scale 'predicted' needs likelihood 'gaussian'")
row("op-likelihood_mean-predicted-odd", lambda: ops.likelihood_mean(XS, "gaussian", 1.0, "predicted"), RuntimeError,
    "decoder_out rows hold 2 outputs per pixel, got 7 columns")
row("op-likelihood_mean-sigma", lambda: ops.likelihood_mean(XS, "gaussian", 0.0, "fixed"), RuntimeError,
    "gaussian_sigma must be a finite number > 0")
row("op-likelihood_mean-int", lambda: ops.likelihood_mean(XS.long(), "gaussian", 1.0, "fixed"), RuntimeError,
    "decoder_out must be a floating-point tensor")
row("op-likelihood_mean-0d", lambda: ops.likelihood_mean(XS[0, 0], "gaussian", 1.0, "fixed"), RuntimeError,
    "decoder_out must have at least one dimension")


# -- fastvae.iwae ------------------------------------------------------------------------------------------
I = fastvae.iwae
row("op-vae_iwae_bound-estimator", lambda: ops.vae_iwae_bound(X, None, torch.zeros(1, 4, 2),
                                                              VAE.flat_parameters(), *VAE.spec().as_args(), "mc",
                                                              "iwae", 1, 0.0),
    RuntimeError, "unknown IWAE estimator 'mc'; choose one of \\['reparam', 'stl', 'dreg'\\]")
row("op-vae_iwae_bound_backward-weights", lambda: ops.vae_iwae_bound_backward(
    torch.ones(3), X, None, torch.zeros(1, 4, 2), [p.detach() for p in VAE.flat_parameters()],
    *VAE.spec().as_args(), "dreg", "iwae", 1, 0.0),
    RuntimeError, r"per-image weights must have shape \[4\]")

# Gaussian scale modes (issue 9 item 1): the names, the likelihood they need, the learned log sigma parameter.
LEARNED = fastvae.VAE(7, 3, (5,), (4,), dtype=torch.float64, likelihood="gaussian", gaussian_scale="learned")
PL = [p.detach() for p in LEARNED.flat_parameters()]
row("op-vae_elbo-gaussian-scale-unknown", lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(likelihood="gaussian",
    gaussian_scale="learnt"), "analytic"), RuntimeError, "unknown gaussian_scale 'learnt'; choose one of")
row("op-vae_elbo-gaussian-scale-bernoulli", lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(gaussian_scale="predicted"),
    "analytic"), RuntimeError, "gaussian_scale 'predicted' needs likelihood 'gaussian'")
row("op-vae_elbo-learned-scale-missing", lambda: ops.vae_elbo(XS, None, EPS, PL[:-1], *LEARNED.spec().as_args(),
    "analytic"), RuntimeError, "expected 9 parameter tensors")
row("op-vae_elbo-learned-scale-shape", lambda: ops.vae_elbo(XS, None, EPS, PL[:-1] + [PL[-1][:3]],
    *LEARNED.spec().as_args(), "analytic"), RuntimeError, "learned Gaussian log sigma must have shape \\[7\\]")
row("op-vae_elbo-learned-scale-dtype", lambda: ops.vae_elbo(XS, None, EPS, PL[:-1] + [PL[-1].float()],
    *LEARNED.spec().as_args(), "analytic"), RuntimeError, "learned Gaussian log sigma must be Double")
row("op-vae_elbo-learned-scale-nan", lambda: ops.vae_elbo(XS, None, EPS, PL[:-1] + [with_entry(PL[-1], 0, NAN)],
    *LEARNED.spec().as_args(), "analytic"), RuntimeError, "a parameter contains NaN or inf")
row("op-vae_decode-predicted-fixed-params", lambda: ops.vae_decode(EPS[0], None, PS, *arch(likelihood="gaussian",
    gaussian_scale="predicted")), RuntimeError, "decoder layer 1 weight must have shape \\[14, 4\\]")


# -- categorical latents (issue 9 item 3) -------------------------------------------------------------------
CATVAE = fastvae.VAE(7, 3, (5,), (4,), dtype=torch.float64, latent="categorical", categories=4)  # N=3, K=4
UC = torch.full((2, 4, 12), 0.5, dtype=torch.float64)  # uniform noise [L, B, N*K]
CPS = [p.detach() for p in CATVAE.flat_parameters()]
CARCH = CATVAE.spec().as_args()
row("op-cat-temperature-0", lambda: ops.vae_categorical_elbo(XS, None, UC, CPS, *CARCH, 0.0, False), RuntimeError,
    "temperature must be finite and > 0, got 0")
row("op-cat-temperature-nan", lambda: ops.vae_categorical_elbo(XS, None, UC, CPS, *CARCH, NAN, False), RuntimeError,
    "temperature must be finite and > 0")
row("op-cat-K1", lambda: ops.vae_categorical_elbo(XS, None, UC, CPS, *arch(latent="categorical", categories=1), 1.0,
                                                  False), RuntimeError, "categories K >= 2")
row("op-cat-on-gaussian", lambda: ops.vae_categorical_elbo(XS, None, UC, PS, *ARCH, 1.0, False), RuntimeError,
    "needs latent='categorical'")
row("op-vae_elbo-on-categorical", lambda: ops.vae_elbo(XS, None, UC, CPS, *CARCH, "analytic"), RuntimeError,
    "this op is for Gaussian latents")
row("op-cat-latent-unknown", lambda: ops.vae_categorical_elbo(XS, None, UC, CPS, *arch(latent="discrete"), 1.0,
                                                              False), RuntimeError, "unknown latent 'discrete'")
row("op-gaussian-categories", lambda: ops.vae_elbo(XS, None, EPS, PS, *arch(categories=3), "analytic"), RuntimeError,
    "must be 0 for latent='gaussian'")
row("op-cat-posterior", lambda: ops.vae_categorical_elbo(XS, None, UC, CPS, *dataclasses.replace(
    CATVAE.spec(), posterior="std", scale_activation="sigmoid").as_args(), 1.0, False), RuntimeError,
    "a categorical latent takes none of them")
row("op-cat-u-shape", lambda: ops.vae_categorical_elbo(XS, None, EPS, CPS, *CARCH, 1.0, False), RuntimeError,
    r"noise u must have shape \[n_samples, 4, 12\]")
row("op-cat-backward-weights", lambda: ops.vae_categorical_elbo_backward(torch.ones(3), torch.ones(4), XS, None, UC,
                                                                         CPS, *CARCH, 1.0, False),
    RuntimeError, r"per-image weights must have shape \[4\]")

assert len(ROWS) >= 100, len(ROWS)  # the table is whole (a collection error otherwise)


@pytest.mark.parametrize("call,exc,match", ROWS)
def test_bad_input_raises_clear_error(call, exc, match):
    with pytest.raises(Exception) as info:
        call()
    assert type(info.value) is exc, f"expected {exc.__name__}, got {type(info.value).__name__}: {info.value}"
    assert match and re.search(match, str(info.value)), str(info.value)
