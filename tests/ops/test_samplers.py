"""Gumbel-softmax, categorical and exponential samplers against references written from the definitions
with torch.distributions, plus gradcheck and statistical tests (opcheck in tests/ops/test_opcheck.py, torch.compile in
tests/ops/test_compile.py, double backward in tests/ops/test_backward_ops.py, error cases in tests/models/test_model_errors.py)."""
import math

import pytest
import scipy.stats
import numpy as np
import torch
from torch.distributions import Exponential

import fastvae
from reference.samplers import gumbel_softmax_ref

ops = torch.ops.fastvae


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def open_uniform(shape, dtype=torch.float64, seed=0):
    # U(0, 1) strictly inside, as the kernels require of injected noise
    return torch.rand(shape, dtype=dtype, generator=gen(seed)).clamp_(1e-6, 1 - 1e-6)


# -- values and gradients against the references -------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,dim", [((7, 5), -1), ((7, 5), 0), ((3, 4, 6), 1), ((11,), 0), ((2, 3, 1), -1)])
@pytest.mark.parametrize("tau", [0.1, 1.0, 3.0])
def test_gumbel_softmax_matches_reference(dtype, shape, dim, tau):
    logits = torch.randn(shape, dtype=dtype, generator=gen(1)) * 3
    u = open_uniform(shape, dtype, seed=2)
    y = fastvae.gumbel_softmax(logits, tau, dim=dim, noise=u)
    torch.testing.assert_close(y, gumbel_softmax_ref(logits, u, tau, dim))
    assert y.shape == logits.shape and y.dtype == dtype


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_gumbel_softmax_gradient_float64(dim):
    logits = (torch.randn(4, 6, 3, dtype=torch.float64, generator=gen(3)) * 2).requires_grad_()
    u = open_uniform((4, 6, 3), seed=4)
    w = torch.randn(4, 6, 3, dtype=torch.float64, generator=gen(5))
    (g,) = torch.autograd.grad((fastvae.gumbel_softmax(logits, 0.3, dim=dim, noise=u) * w).sum(), logits)
    (g_ref,) = torch.autograd.grad((gumbel_softmax_ref(logits, u, 0.3, dim) * w).sum(), logits)
    assert (g - g_ref).abs().max().item() <= 1e-9
    assert torch.autograd.gradcheck(lambda t: fastvae.gumbel_softmax(t, 0.3, dim=dim, noise=u), (logits,))


def test_gumbel_softmax_hard_straight_through():
    logits = torch.randn(50, 4, dtype=torch.float64, generator=gen(6)).requires_grad_()
    u = open_uniform((50, 4), seed=7)
    w = torch.randn(50, 4, dtype=torch.float64, generator=gen(8))
    y = fastvae.gumbel_softmax(logits, 0.5, hard=True, noise=u)
    soft = gumbel_softmax_ref(logits, u, 0.5)
    hard_ref = torch.nn.functional.one_hot(soft.argmax(-1), 4).to(soft) - soft.detach() + soft
    torch.testing.assert_close(y, hard_ref.detach(), rtol=0, atol=1e-12)
    assert ((y == 0) | (y == 1)).all() and (y.sum(-1) == 1).all()
    (g,) = torch.autograd.grad((y * w).sum(), logits)
    (g_ref,) = torch.autograd.grad((hard_ref * w).sum(), logits)
    assert (g - g_ref).abs().max().item() <= 1e-9


def test_gumbel_softmax_neg_inf_logits_and_probs():
    probs = torch.tensor([[0.0, 0.3, 0.7, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    u = open_uniform((2, 4), seed=9)
    y = fastvae.gumbel_softmax(probs=probs, tau=0.5, noise=u)
    torch.testing.assert_close(y, gumbel_softmax_ref(probs.log(), u, 0.5))
    assert (y[0, [0, 3]] == 0).all()
    counts = fastvae.categorical_rsample(probs=probs[0], sample_shape=(20000,), generator=gen(10)).bincount(
        minlength=4)
    assert counts[0] == 0 and counts[3] == 0
    # gradient through probs (log) matches
    p = probs[1:].clone().requires_grad_()
    (g,) = torch.autograd.grad(fastvae.gumbel_softmax(probs=p, tau=0.5, noise=u[1:])[0, 0], p)
    (g_ref,) = torch.autograd.grad(gumbel_softmax_ref(p.log(), u[1:], 0.5)[0, 0], p)
    assert (g - g_ref).abs().max().item() <= 1e-9


def test_categorical_rsample_is_argmax_of_gumbel_softmax():
    logits = torch.log(torch.tensor([0.1, 0.2, 0.5, 0.2], dtype=torch.float64))
    u = open_uniform((100, 4), seed=11)
    idx = fastvae.categorical_rsample(logits, tau=0.1, sample_shape=(100,), noise=u)
    assert idx.dtype == torch.int64 and idx.shape == (100,)
    torch.testing.assert_close(idx, gumbel_softmax_ref(logits.expand(100, 4), u, 0.1).argmax(-1))
    oh = fastvae.categorical_rsample(logits, tau=0.1, sample_shape=(100,), noise=u, one_hot=True)
    torch.testing.assert_close(oh.argmax(-1), idx)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exponential_matches_reference(dtype):
    rate = torch.rand(3, 4, dtype=dtype, generator=gen(12)) * 5 + 0.05
    u = open_uniform((5, 3, 4), dtype, seed=13)
    z = fastvae.exponential_rsample(rate, (5,), noise=u)
    assert z.shape == (5, 3, 4) and z.dtype == dtype
    torch.testing.assert_close(z, Exponential(rate).icdf(u))


def test_exponential_gradient_float64():
    rate = (torch.rand(6, dtype=torch.float64, generator=gen(14)) * 3 + 0.1).requires_grad_()
    u = open_uniform((4, 6), seed=15)
    w = torch.randn(4, 6, dtype=torch.float64, generator=gen(16))
    for shape, noise, weight in (((4,), u, w), ((), u[0], w[0])):
        (g,) = torch.autograd.grad((fastvae.exponential_rsample(rate, shape, noise=noise) * weight).sum(), rate)
        (g_ref,) = torch.autograd.grad((Exponential(rate).icdf(noise) * weight).sum(), rate)
        assert (g - g_ref).abs().max().item() <= 1e-9
    assert torch.autograd.gradcheck(lambda r: fastvae.exponential_rsample(r, (4,), noise=u), (rate,))


def test_exponential_scalar_rate_and_python_number():
    z = fastvae.exponential_rsample(2.0, (3,), generator=gen(17))
    assert z.shape == (3,) and (z > 0).all()
    z = fastvae.exponential_rsample(torch.tensor(2.0, dtype=torch.float64), (2, 3), generator=gen(17))
    assert z.shape == (2, 3) and z.dtype == torch.float64


# -- reproducibility (torch.compile: tests/ops/test_compile.py, opcheck: tests/ops/test_opcheck.py) ----------------
def test_same_seed_same_draws_whatever_the_thread_count():
    logits = torch.randn(20000, 7, generator=gen(18))
    rate = torch.rand(50000, generator=gen(19)) + 0.5
    threads = torch.get_num_threads()
    try:
        out = []
        for n in (1, 2):
            torch.set_num_threads(n)
            out.append((fastvae.gumbel_softmax(logits, 0.7, generator=gen(20)),
                        fastvae.exponential_rsample(rate, (3,), generator=gen(21))))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    assert not torch.equal(out[0][0], fastvae.gumbel_softmax(logits, 0.7, generator=gen(22)))


def _splitmix64(z):
    """SplitMix64's mixer (Steele, Lea & Flood 2014) on uint64 arrays, wrapping as the C++ does."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@pytest.mark.parametrize("n", [1, 7, 4099])
def test_counter_draws_are_the_documented_stream(n):
    """float32 draws are u_i = ((b_i >> 41) + 1/2) 2^-23, b_i = mix(key + (i + 1) golden), key = mix(seed + golden)
    (cpp/cpu/counter_rng.h; the vector and scalar paths give the same bits): the exponential sample with rate 1 is
    then -log(1 - u_i)."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    seed = int(torch.empty((), dtype=torch.int64).random_(generator=gen(41)).item())
    key = _splitmix64(np.array([seed], dtype=np.uint64) + golden)[0]
    with np.errstate(over="ignore"):
        b = _splitmix64(key + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * golden)
    u = ((b >> np.uint64(41)).astype(np.float64) + 0.5) * 2.0 ** -23
    z = fastvae.exponential_rsample(torch.ones(n), generator=gen(41))
    torch.testing.assert_close(z.double(), torch.from_numpy(-np.log1p(-u)), rtol=1e-6, atol=1e-7)


# -- statistics and numerical safety ------------------------------------------------------------------------
@pytest.mark.parametrize("logits", [
    [math.log(0.1), math.log(0.2), math.log(0.5), math.log(0.2)],
    [0.0, -1.0, 2.0, 0.5, -3.0, 1.0, -0.5, 0.3, -2.0, 1.5],
])
def test_hard_gumbel_softmax_frequencies_chi_square(logits):
    n = 10**6
    logits = torch.tensor(logits)
    y = fastvae.gumbel_softmax(logits.expand(n, -1), 0.5, hard=True, generator=gen(31))
    counts = y.sum(0).double().numpy()
    expected = torch.softmax(logits.double(), 0).numpy() * n
    assert counts.sum() == n
    assert scipy.stats.chisquare(counts, expected).pvalue > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exponential_kolmogorov_smirnov(dtype):
    rate = 2.5
    z = fastvae.exponential_rsample(torch.tensor(rate, dtype=dtype), (10**6,), generator=gen(32))
    assert scipy.stats.kstest(z.double().numpy(), "expon", args=(0, 1 / rate)).pvalue > 1e-3


def test_no_nan_or_inf_in_ten_million_draws():
    # probabilities from 1e-30 to 1 in each row, tau = 0.01: 10^6 rows x 10 classes = 10^7 draws
    p = torch.logspace(-30, 0, 10, dtype=torch.float64)
    logits = (p / p.sum()).log().float().expand(10**6, 10).contiguous().requires_grad_()
    y = fastvae.gumbel_softmax(logits, 0.01, generator=gen(33))
    assert torch.isfinite(y).all() and (y >= 0).all()
    torch.testing.assert_close(y.sum(-1), torch.ones(10**6))
    (g,) = torch.autograd.grad((y * torch.arange(10.0)).sum(), logits)
    assert torch.isfinite(g).all()
    rate = torch.logspace(-3, 3, 10**7, dtype=torch.float32)
    z = fastvae.exponential_rsample(rate, generator=gen(34))
    assert torch.isfinite(z).all() and (z > 0).all()


def test_extreme_noise_stays_finite():
    eps32 = torch.finfo(torch.float32).eps
    u = torch.tensor([[eps32 / 2, 1 - eps32 / 2, 0.5]])
    y = fastvae.gumbel_softmax(torch.tensor([[0.0, -80.0, 5.0]]), 0.01, noise=u)
    assert torch.isfinite(y).all()
    z = fastvae.exponential_rsample(torch.tensor([1e-3, 1e3, 1.0]), noise=u[0])
    assert torch.isfinite(z).all() and (z > 0).all()


# -- edge cases (the error cases are rows of tests/models/test_model_errors.py) ----------------------------------
def test_empty_inputs():
    assert fastvae.exponential_rsample(torch.ones(0), (3,)).shape == (3, 0)
    assert fastvae.gumbel_softmax(torch.zeros(0, 4), 1.0).shape == (0, 4)
