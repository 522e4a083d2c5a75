"""Table of bad inputs to the model API: VAE(...), VAE.from_preset, fastvae.elbo / iwae / log_likelihood and
VAE.encode / decode / sample / reconstruct. Each row is (call, expected exception type, message fragment): the
call must raise exactly that kind of error with that fragment, never return garbage, coerce silently (2.7 -> 2)
or crash. Rows were found by probing every argument with wrong kinds, floats for integers, bools, NaN/inf,
negative, zero, huge sizes, empty and 0-d tensors, wrong dtype/shape/device (meta included) and out-of-range
labels or noise. The ops called directly: tests/ops/test_op_errors.py; fit: tests/training/test_fit_errors.py;
the data transforms: tests/data/test_data_errors.py."""
import dataclasses
import re

import numpy as np
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


# -- VAE(...) and VAE.from_preset ---------------------------------------------------------------------------
for arg in ("data_dim", "latent_dim", "cond_dim"):
    for bad, exc, msg in [(2.5, TypeError, "must be an integer"), (2.0, TypeError, "must be an integer"),
                          (True, TypeError, "must be an integer"), ("8", TypeError, "must be an integer"),
                          (None, TypeError, "must be an integer"), (np.float64(3), TypeError, "must be an integer"),
                          (-1, ValueError, "must be an integer >= ")]:
        row(f"VAE-{arg}={bad!r}", lambda a=arg, b=bad: fastvae.VAE(**{a: b}), exc, f"VAE: {arg} {msg}")
    if arg != "cond_dim":
        row(f"VAE-{arg}=0", lambda a=arg: fastvae.VAE(**{a: 0}), ValueError, f"{arg} must be an integer >= 1")
row("VAE-positional-latent-2.5", lambda: fastvae.VAE(784, 2.5), TypeError, "latent_dim must be an integer")
for arg in ("encoder_hidden", "decoder_hidden"):
    for bad, exc, msg in [((512.5,), TypeError, r"\[0\] must be an integer"),
                          ((256, 2.0), TypeError, r"\[1\] must be an integer"),
                          ((True,), TypeError, "must be an integer"), ((0,), ValueError, ">= 1"),
                          ((-5, 3), ValueError, ">= 1"), (5, TypeError, "sequence of integers"),
                          ("512", TypeError, "sequence of integers"), (None, TypeError, "sequence of integers")]:
        row(f"VAE-{arg}={bad!r}", lambda a=arg, b=bad: fastvae.VAE(**{a: b}), exc, msg)
for arg in ("activation", "mean_activation", "scale_activation"):
    row(f"VAE-{arg}-unknown", lambda a=arg: fastvae.VAE(**{a: "gelu"}), ValueError, f"{arg} must be one of")
    row(f"VAE-{arg}-int", lambda a=arg: fastvae.VAE(**{a: 1}), TypeError, f"{arg} must be one of")
    row(f"VAE-{arg}-None", lambda a=arg: fastvae.VAE(**{a: None}), TypeError, f"{arg} must be one of")
row("VAE-posterior-unknown", lambda: fastvae.VAE(posterior="var"), ValueError, "posterior must be one of")
row("VAE-posterior-int", lambda: fastvae.VAE(posterior=0), TypeError, "posterior must be one of")
row("VAE-posterior-std-no-sigmoid", lambda: fastvae.VAE(posterior="std"), ValueError, "sigmoid")
for bad, exc, msg in [(INF, ValueError, "finite"), (NAN, ValueError, "finite"), (-INF, ValueError, "finite"),
                      (-0.1, ValueError, ">= 0.0"), ("0.2", TypeError, "real number"),
                      (True, TypeError, "real number"), (None, TypeError, "real number"),
                      (1j, TypeError, "real number")]:
    row(f"VAE-negative_slope={bad!r}", lambda b=bad: fastvae.VAE(activation="leaky_relu", negative_slope=b),
        exc, f"negative_slope must be a {msg}" if exc is TypeError or msg == "finite" else msg)
for bad in (torch.float16, torch.bfloat16, torch.int64, "float32", None):
    row(f"VAE-dtype={bad!r}", lambda b=bad: fastvae.VAE(dtype=b), TypeError, "dtype must be torch.float32")
row("VAE-huge-data_dim", lambda: fastvae.VAE(data_dim=10 ** 9), ValueError, "exceeds the limit")
row("VAE-huge-hidden", lambda: fastvae.VAE(encoder_hidden=(10 ** 6, 10 ** 6)), ValueError, "exceeds the limit")
row("VAE-64-layers", lambda: fastvae.VAE(encoder_hidden=(2,) * 64), ValueError, "at most 63 hidden layers")
row("from_preset-unknown", lambda: fastvae.VAE.from_preset("mnist"), ValueError, "name must be one of")
row("from_preset-int", lambda: fastvae.VAE.from_preset(3), TypeError, "name must be one of")
row("from_preset-None", lambda: fastvae.VAE.from_preset(None), TypeError, "name must be one of")
row("from_preset-list", lambda: fastvae.VAE.from_preset(["ese546"]), TypeError, "name must be one of")
row("from_preset-override-float", lambda: fastvae.VAE.from_preset("ese546", latent_dim=8.5), TypeError,
    "latent_dim must be an integer")
row("from_preset-override-unknown", lambda: fastvae.VAE.from_preset("ese546", width=3), TypeError,
    "unexpected keyword")

# -- fastvae.elbo and VAE.forward -------------------------------------------------------------------------
E = fastvae.elbo
row("elbo-model-None", lambda: E(None, X), TypeError, "model must be a fastvae model")
row("elbo-model-Module", lambda: E(torch.nn.Linear(2, 2), X), TypeError, "model must be a fastvae model")
row("elbo-x-list", lambda: E(VAE, X.tolist()), TypeError, "x must be a torch.Tensor or numpy array")
row("elbo-x-numpy-float64", lambda: E(VAE, X.double().numpy()), TypeError, "model's dtype torch.float32")
row("elbo-x-scalar", lambda: E(VAE, 1.0), TypeError, "x must be a torch.Tensor")
for dt in (torch.float64, torch.float16, torch.int32, torch.int64, torch.bool):  # uint8 images are pixels
    row(f"elbo-x-{dt}", lambda d=dt: E(VAE, X.to(d)), TypeError, "model's dtype torch.float32")
row("elbo-x-width", lambda: E(VAE, X[:, :783]), ValueError, r"x must have shape \[B, 784\]")
row("elbo-x-1d", lambda: E(VAE, X[0]), ValueError, r"x must have shape \[B, 784\]")
row("elbo-x-0d", lambda: E(VAE, torch.tensor(1.0)), ValueError, r"x must have shape \[B, 784\]")
row("elbo-x-27x27", lambda: E(VAE, torch.zeros(4, 27, 27)), ValueError, r"x must have shape \[B, 784\]")
row("elbo-x-non-binary", lambda: E(VAE, with_entry(X, (0, 0), 0.5)), RuntimeError, "must be binary")
row("elbo-x-bytes-as-float", lambda: E(VAE, X * 255), RuntimeError, "must be binary")
row("elbo-x-negative", lambda: E(VAE, -X), RuntimeError, "must be binary")
row("elbo-x-nan", lambda: E(VAE, with_entry(X, (1, 3), NAN)), RuntimeError, "x contains NaN")
row("elbo-x-inf", lambda: E(VAE, with_entry(X, (1, 3), INF)), RuntimeError, "must be binary")
row("elbo-x-meta", lambda: E(VAE, X.to("meta")), ValueError, "must share one device")
row("elbo-model-meta-x-cpu", lambda: E(meta_model(), XS), ValueError, "must share one device")
for bad, exc, msg in [(2.7, TypeError, "n_samples must be an integer"), (1.0, TypeError, "must be an integer"),
                      (True, TypeError, "must be an integer"), ("2", TypeError, "must be an integer"),
                      (None, TypeError, "must be an integer"), (0, ValueError, "n_samples must be an integer >= 1"),
                      (-3, ValueError, ">= 1"), (10 ** 9, ValueError, "exceeds the limit"),
                      (2 ** 20, ValueError, "exceeds the limit")]:
    row(f"elbo-n_samples={bad!r}", lambda b=bad: E(VAE, X, n_samples=b), exc, msg)
row("elbo-eps-list", lambda: E(VAE, X, eps=[[[0.0, 0.0]] * 4]), TypeError, "eps must be a torch.Tensor")
row("elbo-eps-float64", lambda: E(VAE, X, eps=torch.zeros(1, 4, 2, dtype=torch.float64)), TypeError,
    "eps must have the dtype of x")
row("elbo-eps-int", lambda: E(VAE, X, eps=torch.zeros(1, 4, 2, dtype=torch.int64)), TypeError,
    "eps must have the dtype of x")
row("elbo-eps-L0", lambda: E(VAE, X, eps=torch.zeros(0, 4, 2)), ValueError, "n_samples >= 1")
row("elbo-eps-batch", lambda: E(VAE, X, eps=torch.zeros(1, 3, 2)), ValueError, r"eps must have shape")
row("elbo-eps-latent", lambda: E(VAE, X, eps=torch.zeros(1, 4, 3)), ValueError, r"eps must have shape")
row("elbo-eps-2d", lambda: E(VAE, X, eps=torch.zeros(4, 2)), ValueError, r"eps must have shape")
row("elbo-eps-0d", lambda: E(VAE, X, eps=torch.tensor(0.0)), ValueError, r"eps must have shape")
row("elbo-eps-inf", lambda: E(VAE, X, eps=torch.full((1, 4, 2), INF)), RuntimeError, "eps contains NaN or inf")
row("elbo-eps-nan", lambda: E(VAE, X, eps=torch.full((1, 4, 2), NAN)), RuntimeError, "eps contains NaN or inf")
row("elbo-eps-meta", lambda: E(VAE, X, eps=torch.zeros(1, 4, 2, device="meta")), ValueError,
    "must share one device")
row("elbo-y-unconditional", lambda: E(VAE, X, y=Y), ValueError, "unconditional")
row("elbo-cvae-y-missing", lambda: E(CVAE, X), ValueError, "needs labels y")
row("elbo-y-float-3.7", lambda: E(CVAE, X, y=torch.tensor([3.7, 1.0, 2.0, 0.0])), TypeError,
    "labels y must be an integer tensor")
row("elbo-y-float-whole", lambda: E(CVAE, X, y=Y.float()), TypeError, "labels y must be an integer tensor")
row("elbo-y-list-float", lambda: E(CVAE, X, y=[3.7, 1, 2, 0]), TypeError, "labels y must be an integer tensor")
row("elbo-y-numpy-float", lambda: E(CVAE, X, y=np.array([0.5, 1, 2, 0])), TypeError, "integer tensor")
row("elbo-y-bool", lambda: E(CVAE, X, y=torch.tensor([True, False, True, False])), TypeError, "integer tensor")
row("elbo-y-string", lambda: E(CVAE, X, y="0123"), TypeError, "labels y must be an integer tensor")
row("elbo-y-10", lambda: E(CVAE, X, y=torch.tensor([0, 1, 2, 10])), ValueError, r"lie in \[0, 10\)")
row("elbo-y-negative", lambda: E(CVAE, X, y=torch.tensor([0, -1, 2, 3])), ValueError, r"lie in \[0, 10\)")
row("elbo-y-short", lambda: E(CVAE, X, y=Y[:3]), ValueError, r"labels y must have shape \[4\]")
row("elbo-y-2d", lambda: E(CVAE, X, y=Y[:, None]), ValueError, r"labels y must have shape \[4\]")
row("elbo-y-0d", lambda: E(CVAE, X, y=torch.tensor(3)), ValueError, r"labels y must have shape \[4\]")
row("elbo-y-meta", lambda: E(CVAE, X, y=Y.to("meta")), ValueError, "labels y are on meta")
for bad, exc in [("reinforce", ValueError), ("", ValueError), (1, TypeError), (None, TypeError)]:
    row(f"elbo-estimator={bad!r}", lambda b=bad: E(VAE, X, estimator=b), exc, "estimator must be one of")
row("elbo-generator-int", lambda: E(VAE, X, generator=5), TypeError, "generator must be a torch.Generator")
row("elbo-generator-str", lambda: E(VAE, X, generator="seed"), TypeError, "generator must be a torch.Generator")
row("elbo-grad-wrt-x", lambda: torch.autograd.grad(E(SMALL, XS.clone().requires_grad_()).elbo.sum(),
                                                    SMALL.flat_parameters()), RuntimeError, "with respect to x or eps")
row("elbo-grad-wrt-eps", lambda: E(SMALL, XS, eps=EPS.clone().requires_grad_()).elbo.sum().backward(), RuntimeError,
    "with respect to x or eps")
row("elbo-nan-parameter", lambda: E(nan_model(), XS), RuntimeError, "a parameter contains NaN")
row("forward-n_samples-1.5", lambda: VAE(X, n_samples=1.5), TypeError, "n_samples must be an integer")
row("forward-estimator", lambda: VAE(X, estimator="score"), ValueError, "estimator must be one of")
row("forward-x-double", lambda: VAE(X.double()), TypeError, "model's dtype")
row("forward-cvae-y-float", lambda: CVAE(X, Y.double()), TypeError, "integer tensor")

# -- fastvae.log_likelihood -------------------------------------------------------------------------------
LL = fastvae.log_likelihood
row("ll-model-str", lambda: LL("stats305c", X), TypeError, "model must be a fastvae model")
for bad, exc, msg in [(2.5, TypeError, "k must be an integer"), (True, TypeError, "k must be an integer"),
                      (None, TypeError, "k must be an integer"), ("10", TypeError, "k must be an integer"),
                      (0, ValueError, "k must be an integer >= 1"), (-5, ValueError, "k must be an integer >= 1"),
                      (10 ** 9, ValueError, "exceeds the limit")]:
    row(f"ll-k={bad!r}", lambda b=bad: LL(VAE, X, k=b), exc, msg)
for bad, exc, msg in [(0, ValueError, "batch_size must be an integer >= 1"), (-1, ValueError, ">= 1"),
                      (2.5, TypeError, "batch_size must be an integer"),
                      (True, TypeError, "must be an integer"), (100.0, TypeError, "must be an integer")]:
    row(f"ll-batch_size={bad!r}", lambda b=bad: LL(VAE, X, k=2, batch_size=b), exc, msg)
row("ll-k-times-batch-huge", lambda: LL(VAE, X, k=10 ** 6, batch_size=10 ** 4), ValueError, "exceeds the limit")
row("ll-x-double", lambda: LL(VAE, X.double(), k=2), TypeError, "model's dtype")
row("ll-x-non-binary", lambda: LL(VAE, X * 0.5, k=2), RuntimeError, "must be binary")
row("ll-x-width", lambda: LL(VAE, X[:, :10], k=2), ValueError, r"shape \[B, 784\]")
row("ll-x-meta", lambda: LL(VAE, X.to("meta"), k=2), ValueError, "must share one device")
row("ll-cvae-y-missing", lambda: LL(CVAE, X, k=2), ValueError, "needs labels y")
row("ll-cvae-y-float", lambda: LL(CVAE, X, k=2, y=[3.7, 1, 2, 0]), TypeError, "integer tensor")
row("ll-cvae-y-range", lambda: LL(CVAE, X, k=2, y=[0, 1, 2, 11]), ValueError, r"lie in \[0, 10\)")
row("ll-generator", lambda: LL(VAE, X, k=2, generator=0), TypeError, "generator must be a torch.Generator")

# -- VAE.encode / decode / sample / reconstruct -------------------------------------------------------------
row("encode-x-list", lambda: VAE.encode(X.tolist()), TypeError, "VAE.encode: x must be a torch.Tensor")
row("encode-x-double", lambda: VAE.encode(X.double()), TypeError, "model's dtype")
row("encode-x-int32", lambda: VAE.encode((X * 255).to(torch.int32)), TypeError, "binarize")
row("encode-x-width", lambda: VAE.encode(X[:, 1:]), ValueError, r"shape \[B, 784\]")
row("encode-x-non-binary", lambda: VAE.encode(X * 0.3), RuntimeError, "must be binary")
row("encode-x-nan", lambda: VAE.encode(with_entry(X, (0, 0), NAN)), RuntimeError, "NaN")
row("encode-x-meta", lambda: VAE.encode(X.to("meta")), ValueError, "must share one device")
row("encode-y-unconditional", lambda: VAE.encode(X, Y), ValueError, "unconditional")
row("encode-cvae-y-missing", lambda: CVAE.encode(X), ValueError, "needs labels y")
row("encode-cvae-y-float", lambda: CVAE.encode(X, torch.tensor([3.7, 0, 0, 0])), TypeError, "integer tensor")
row("encode-cvae-y-range", lambda: CVAE.encode(X, torch.tensor([0, 0, 0, 99])), ValueError, r"\[0, 10\)")
row("encode-nan-parameter", lambda: nan_model().encode(XS), RuntimeError, "a parameter contains NaN")
Z = torch.zeros(5, 2)
row("decode-z-list", lambda: VAE.decode([[0.0, 0.0]]), TypeError, "VAE.decode: z must be a torch.Tensor")
row("decode-z-double", lambda: VAE.decode(Z.double()), TypeError, "z must be a float tensor of the model's dtype")
row("decode-z-int", lambda: VAE.decode(Z.long()), TypeError, "model's dtype")
row("decode-z-width", lambda: VAE.decode(torch.zeros(5, 3)), ValueError, r"z must have shape \[B, 2\]")
row("decode-z-1d", lambda: VAE.decode(torch.zeros(2)), ValueError, r"z must have shape \[B, 2\]")
row("decode-z-0d", lambda: VAE.decode(torch.tensor(0.0)), ValueError, r"z must have shape \[B, 2\]")
row("decode-z-nan", lambda: VAE.decode(with_entry(Z, (0, 0), NAN)), RuntimeError, "z contains NaN or inf")
row("decode-z-inf", lambda: VAE.decode(with_entry(Z, (2, 1), -INF)), RuntimeError, "z contains NaN or inf")
row("decode-z-meta", lambda: VAE.decode(Z.to("meta")), ValueError, "must share one device")
row("decode-logits-str", lambda: VAE.decode(Z, logits="yes"), TypeError, "logits must be True or False")
row("decode-logits-int", lambda: VAE.decode(Z, logits=1), TypeError, "logits must be True or False")
row("decode-y-unconditional", lambda: VAE.decode(Z, torch.zeros(5, dtype=torch.int64)), ValueError, "unconditional")
row("decode-cvae-y-missing", lambda: CVAE.decode(torch.zeros(5, 40)), ValueError, "needs labels y")
row("decode-cvae-y-float", lambda: CVAE.decode(torch.zeros(5, 40), torch.full((5,), 2.5)), TypeError, "integer")
row("decode-cvae-y-range", lambda: CVAE.decode(torch.zeros(5, 40), torch.full((5,), 10)), ValueError, r"\[0, 10\)")
for bad, exc, msg in [(2.5, TypeError, "n must be an integer"), (True, TypeError, "n must be an integer"),
                      ("3", TypeError, "n must be an integer"), (None, TypeError, "n must be an integer"),
                      (4.0, TypeError, "n must be an integer"), (-1, ValueError, "n must be an integer >= 0"),
                      (10 ** 9, ValueError, "exceeds the limit")]:
    row(f"sample-n={bad!r}", lambda b=bad: VAE.sample(b), exc, msg)
row("sample-y-unconditional", lambda: VAE.sample(3, y=1), ValueError, "unconditional")
row("sample-generator", lambda: VAE.sample(3, generator=1), TypeError, "generator must be a torch.Generator")
row("sample-cvae-y-missing", lambda: CVAE.sample(3), ValueError, "needs the class y")
row("sample-cvae-y-10", lambda: CVAE.sample(3, y=10), ValueError, "y must be an integer <= 9")
row("sample-cvae-y--1", lambda: CVAE.sample(3, y=-1), ValueError, "y must be an integer >= 0")
row("sample-cvae-y-2.5", lambda: CVAE.sample(3, y=2.5), TypeError, "y must be an integer")
row("sample-cvae-y-True", lambda: CVAE.sample(3, y=True), TypeError, "y must be an integer")
row("sample-cvae-y-tensor-float", lambda: CVAE.sample(3, y=torch.tensor(2.0)), TypeError, "y must be an integer")
row("sample-cvae-y-list-length", lambda: CVAE.sample(3, y=[1, 2]), ValueError, r"labels y must have shape \[3\]")
row("sample-cvae-y-list-float", lambda: CVAE.sample(2, y=[1.5, 2.0]), TypeError, "integer tensor")
row("reconstruct-x-double", lambda: VAE.reconstruct(X.double()), TypeError, "VAE.reconstruct: x")
row("reconstruct-x-non-binary", lambda: VAE.reconstruct(X / 2), RuntimeError, "must be binary")
row("reconstruct-x-meta", lambda: VAE.reconstruct(X.to("meta")), ValueError, "must share one device")
row("reconstruct-cvae-y-float", lambda: CVAE.reconstruct(X, Y.float()), TypeError, "integer tensor")
row("reconstruct-cvae-y-missing", lambda: CVAE.reconstruct(X), ValueError, "needs labels y")

# Likelihoods (issue 9 item 1): unknown names on both sides, data that the likelihood cannot take.
CBM = fastvae.VAE(7, 3, (5,), (4,), dtype=torch.float64, likelihood="continuous_bernoulli")
XI = torch.rand(4, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
row("vae-likelihood-unknown", lambda: fastvae.VAE(7, 3, likelihood="gauss"), ValueError,
    "VAE: likelihood must be one of")
row("vae-likelihood-not-str", lambda: fastvae.VAE(7, 3, likelihood=1), TypeError, "VAE: likelihood must be")
row("elbo-cb-x-above-1", lambda: E(CBM, XI + 1), RuntimeError, "must lie in \\[0, 1\\] for the continuous Bernoulli")
row("elbo-cb-x-negative", lambda: E(CBM, with_entry(XI, (1, 2), -1e-9)), RuntimeError, "must lie in \\[0, 1\\]")
row("elbo-cb-x-nan", lambda: E(CBM, with_entry(XI, (0, 0), NAN)), RuntimeError, "x contains NaN")
row("encode-cb-x-bytes", lambda: CBM.encode(XI * 255), RuntimeError, "must lie in \\[0, 1\\]")
row("elbo-bernoulli-x-intensities", lambda: E(SMALL, XI), RuntimeError, "must be binary")
row("vae-gaussian-sigma-zero", lambda: fastvae.VAE(7, 3, likelihood="gaussian", gaussian_sigma=0.0), ValueError,
    "VAE: gaussian_sigma must be")
row("vae-gaussian-sigma-str", lambda: fastvae.VAE(7, 3, likelihood="gaussian", gaussian_sigma="1"), TypeError,
    "VAE: gaussian_sigma must be")


# -- fastvae.iwae ------------------------------------------------------------------------------------------
I = fastvae.iwae
row("iwae-model-None", lambda: I(None, X), TypeError, "iwae: model must be a fastvae model")
row("iwae-x-list", lambda: I(VAE, X.tolist()), TypeError, "iwae: x must be a torch.Tensor")
row("iwae-x-float64", lambda: I(VAE, X.double()), TypeError, "model's dtype torch.float32")
row("iwae-x-width", lambda: I(VAE, X[:, :783]), ValueError, r"x must have shape \[B, 784\]")
row("iwae-x-non-binary", lambda: I(VAE, with_entry(X, (0, 0), 0.5)), RuntimeError, "must be binary")
row("iwae-x-nan", lambda: I(VAE, with_entry(X, (1, 3), NAN)), RuntimeError, "x contains NaN")
for bad, exc, msg in [(2.0, TypeError, "iwae: k must be an integer"), (True, TypeError, "must be an integer"),
                      ("5", TypeError, "must be an integer"), (None, TypeError, "must be an integer"),
                      (0, ValueError, "k must be an integer >= 1"), (-1, ValueError, ">= 1"),
                      (10 ** 9, ValueError, "exceeds the limit")]:
    row(f"iwae-k={bad!r}", lambda b=bad: I(VAE, X, k=b), exc, msg)
for bad, exc, msg in [("analytic", ValueError, "iwae: estimator must be one of"),
                      ("DReG", ValueError, "estimator must be one of"), (None, TypeError, "estimator must be"),
                      (1, TypeError, "estimator must be")]:
    row(f"iwae-estimator={bad!r}", lambda b=bad: I(VAE, X, estimator=b), exc, msg)
row("iwae-eps-float64", lambda: I(VAE, X, eps=torch.zeros(1, 4, 2, dtype=torch.float64)), TypeError,
    "eps must have the dtype of x")
row("iwae-eps-K0", lambda: I(VAE, X, eps=torch.zeros(0, 4, 2)), ValueError, "k >= 1")
row("iwae-eps-batch", lambda: I(VAE, X, eps=torch.zeros(1, 3, 2)), ValueError, "eps must have shape")
row("iwae-eps-nan", lambda: I(VAE, X, eps=torch.full((1, 4, 2), NAN)), RuntimeError, "eps contains NaN or inf")
row("iwae-y-unconditional", lambda: I(VAE, X, y=Y), ValueError, "unconditional")
row("iwae-cvae-y-missing", lambda: I(CVAE, X), ValueError, "needs labels y")
row("iwae-cvae-y-float", lambda: I(CVAE, X, y=Y.float()), TypeError, "labels y must be an integer tensor")
row("iwae-generator-int", lambda: I(VAE, X, generator=3), TypeError, "generator must be a torch.Generator")

# Gaussian scale modes (issue 9 item 1): the names, the likelihood they need, the learned log sigma parameter.
LEARNED = fastvae.VAE(7, 3, (5,), (4,), dtype=torch.float64, likelihood="gaussian", gaussian_scale="learned")
PL = [p.detach() for p in LEARNED.flat_parameters()]
row("vae-gaussian-scale-unknown", lambda: fastvae.VAE(7, 3, likelihood="gaussian", gaussian_scale="learnt"), ValueError,
    "VAE: gaussian_scale must be one of")
row("vae-gaussian-scale-int", lambda: fastvae.VAE(7, 3, likelihood="gaussian", gaussian_scale=1), TypeError,
    "VAE: gaussian_scale must be")
row("vae-gaussian-scale-bernoulli", lambda: fastvae.VAE(7, 3, gaussian_scale="learned"), ValueError,
    "gaussian_scale='learned' needs likelihood='gaussian'")


# -- categorical latents (issue 9 item 3) -------------------------------------------------------------------
CATVAE = fastvae.VAE(7, 3, (5,), (4,), dtype=torch.float64, latent="categorical", categories=4)  # N=3, K=4
UC = torch.full((2, 4, 12), 0.5, dtype=torch.float64)  # uniform noise [L, B, N*K]
CPS = [p.detach() for p in CATVAE.flat_parameters()]
CARCH = CATVAE.spec().as_args()
for bad, exc, msg in [(0.0, ValueError, "temperature must be > 0"), (-1.0, ValueError, "temperature must be > 0"),
                      (NAN, ValueError, "temperature must be a finite number"),
                      (INF, ValueError, "temperature must be a finite number"),
                      ("1", TypeError, "temperature must be a real number"),
                      (True, TypeError, "temperature must be a real number")]:
    row(f"cat-elbo-temperature={bad!r}", lambda b=bad: E(CATVAE, XS, eps=UC, temperature=b), exc, msg)
row("cat-elbo-hard-int", lambda: E(CATVAE, XS, eps=UC, hard=1), TypeError, "hard must be")
row("cat-elbo-estimator-mc", lambda: E(CATVAE, XS, estimator="mc"), ValueError, "estimator must be 'analytic'")
row("cat-elbo-eps-gaussian-shape", lambda: E(CATVAE, XS, eps=EPS), ValueError, r"must have shape \[n_samples >= 1, 4, 12\]")
row("cat-elbo-eps-zero", lambda: E(CATVAE, XS, eps=torch.zeros(1, 4, 12, dtype=torch.float64)), RuntimeError,
    r"strictly inside \(0, 1\)")
row("cat-elbo-eps-one", lambda: E(CATVAE, XS, eps=torch.ones(1, 4, 12, dtype=torch.float64)), RuntimeError,
    r"strictly inside \(0, 1\)")
row("cat-elbo-eps-nan", lambda: E(CATVAE, XS, eps=torch.full((1, 4, 12), NAN, dtype=torch.float64)), RuntimeError,
    r"strictly inside \(0, 1\)")
row("cat-elbo-eps-float32", lambda: E(CATVAE, XS, eps=UC.float()), TypeError, "eps must have the dtype of x")
row("gauss-elbo-temperature", lambda: E(SMALL, XS, temperature=0.5), ValueError,
    "temperature and hard apply to categorical latents only")
row("gauss-elbo-hard", lambda: E(SMALL, XS, hard=True), ValueError, "apply to categorical latents only")
row("cat-iwae", lambda: fastvae.iwae(CATVAE, XS), ValueError, "not implemented for latent='categorical'")
row("cat-log-likelihood", lambda: fastvae.log_likelihood(CATVAE, XS), ValueError, "not implemented for latent='categorical'")
row("cat-decode-width", lambda: CATVAE.decode(torch.zeros(2, 3, dtype=torch.float64)), ValueError,
    r"z must have shape \[B, 12\]")
for kw, exc, msg in [(dict(categories=1), ValueError, "categorical latent needs categories >= 2, got 1"),
                     (dict(categories=0), ValueError, "categorical latent needs categories >= 2, got 0"),
                     (dict(categories=2.0), TypeError, "categories must be an integer"),
                     (dict(categories=-3), ValueError, "categories must be an integer >= 0"),
                     (dict(categories=4, posterior="logstd"), ValueError, "leave them at their defaults"),
                     (dict(categories=4, mean_activation="sigmoid"), ValueError, "leave them at their defaults")]:
    row(f"cat-VAE-{kw}", lambda k=kw: fastvae.VAE(7, 3, (5,), (4,), latent="categorical", **k), exc, msg)
row("VAE-latent-unknown", lambda: fastvae.VAE(7, 3, latent="discrete"), ValueError, "latent must be one of")
row("VAE-gaussian-categories", lambda: fastvae.VAE(7, 3, categories=4), ValueError,
    "it must be 0 with latent='gaussian', got 4")


def test_table_is_large():
    assert len(ROWS) >= 150, len(ROWS)


@pytest.mark.parametrize("call,exc,match", ROWS)
def test_bad_input_raises_clear_error(call, exc, match):
    with pytest.raises(Exception) as info:
        call()
    assert type(info.value) is exc, f"expected {exc.__name__}, got {type(info.value).__name__}: {info.value}"
    assert match and re.search(match, str(info.value)), str(info.value)
