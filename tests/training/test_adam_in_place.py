"""The trainer's in-place Adam step (cpp/cpu/adam_kernel.cpp): it runs only when bounds on the state and the
gradients prove that every value it computes stays finite, so that a step it takes never has to be undone; then
it gives the bits of fastvae's Adam op (torch.optim.Adam's arithmetic), and the bounds it carries to the next step
(computed from the bounds before it, cpp/cpu/adam_kernel.cpp adam_step_bounds) hold the state it wrote."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastvae

SHAPES = [(7, 5), (300,), (1,)]


def magnitude_bits(tensors, signed=False):
    """max |x| (or, signed, max x with negative values above every finite one) as float32 bit patterns."""
    bits = np.concatenate([t.numpy().view(np.uint32).ravel() for t in tensors])
    return int(bits.max() if signed else (bits & 0x7FFFFFFF).max())


def same_bits(a, b):
    return torch.equal(a.view(torch.int32), b.view(torch.int32))  # NaN included


def state(seed, scale):
    """Parameters, gradients and moments with entries of magnitude about 10**scale[k] (k: p, g, m, v)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k, e in enumerate(scale):
        ts = [torch.randn(s, generator=g) * 10.0 ** e for s in SHAPES]
        out.append([t.abs() if k == 3 else t for t in ts])  # second moments are >= 0
    return out


def step(tensors, hyper):
    """fastvae._C._adam_step_in_place on clones: (result or None, the clones)."""
    clones = [[t.clone() for t in ts] for ts in tensors]
    return fastvae._C._adam_step_in_place(*clones, *hyper), clones


def reference(tensors, hyper):
    """fastvae's Adam op (tests/models/test_vae.py checks it against torch.optim.Adam) on clones."""
    p, g, m, v = [[t.clone() for t in ts] for ts in tensors]
    torch.ops.fastvae.adam_step(p, g, m, v, *hyper)
    return [p, g, m, v]


def check_taken(tensors, hyper):
    """The step was taken: bit for bit the op's update, finite, within the bounds carried to the next step."""
    bounds, (p, g, m, v) = step(tensors, hyper)
    assert bounds is not None
    ref = reference(tensors, hyper)
    for ours, theirs in zip((p, m, v), (ref[0], ref[2], ref[3])):
        for a, b in zip(ours, theirs):
            assert same_bits(a, b)
            assert torch.isfinite(a).all()
    # float32 bit patterns of non-negative bounds order as their values
    written = (magnitude_bits(p), magnitude_bits(m), magnitude_bits(v, signed=True))
    assert all(b >= w for b, w in zip(bounds, written)), (bounds, written)
    return bounds, written


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("t", [1, 10, 100_000])
def test_ordinary_training_steps_run_in_place(t, weight_decay):
    # what training meets: weights of order 1, gradients up to 10, moments of a few hundred steps
    tensors = state(0, (0, 1, -1, -2))
    for hyper in [(t, 1e-3, 0.9, 0.999, 1e-8, weight_decay), (t, 1e-3, 0.99, 0.999, 1e-4, weight_decay)]:
        bounds, written = check_taken(tensors, hyper)  # the second: the IWAE paper's betas and eps
        # the moments' bounds are the larger of the old moments' and the gradients' (and their squares'), with a
        # rounding margin; |p|'s grows by at most lr / (1 - beta1^t) max|m| / eps
        as_float = np.array(bounds, dtype=np.uint32).view(np.float32).astype(np.float64)
        g = float(max(x.abs().max() for x in tensors[1])) + weight_decay * float(max(x.abs().max() for x in tensors[0]))
        m = max(float(max(x.abs().max() for x in tensors[2])), g)
        assert m <= as_float[1] <= m * (1 + 2**-18)
        assert max(float(max(x.max() for x in tensors[3])), g * g) <= as_float[2] <= max(
            float(max(x.max() for x in tensors[3])), g * g) * (1 + 2**-17)


@pytest.mark.parametrize("case, change, hyper", [
    ("nan gradient", (1, 0, 3, float("nan")), None),
    ("inf gradient", (1, 1, 17, float("inf")), None),
    ("nan parameter", (0, 2, 0, float("nan")), None),
    ("inf first moment", (2, 0, 4, -float("inf")), None),
    ("negative second moment", (3, 1, 9, -1e-30), None),
    ("minus zero second moment", (3, 0, 0, -0.0), None),
    ("eps zero: 0 / 0 where v = 0", None, (1, 1e-3, 0.9, 0.999, 0.0, 0.0)),
    ("eps subnormal: flushed to zero", None, (1, 1e-3, 0.9, 0.999, 1e-40, 0.0)),
    ("step size beyond float32", None, (1, 1e39, 0.9, 0.999, 1e-8, 0.0)),
    ("step size overflowing the parameters", None, (1, 1e30, 0.9, 0.999, 1e-8, 0.0)),
    ("weight decay overflowing the gradient", None, (1, 1e-3, 0.9, 0.999, 1e-8, 1e38)),
])
def test_steps_that_may_not_stay_finite_leave_the_state(case, change, hyper):
    tensors = state(1, (0, 0, 0, 0))
    if change is not None:
        k, i, j, value = change
        tensors[k][i].view(-1)[j] = value
    hyper = hyper or (1, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    result, clones = step(tensors, hyper)
    assert result is None, case
    for ours, before in zip(clones, tensors):
        for a, b in zip(ours, before):
            assert same_bits(a, b), case


@settings(max_examples=300, deadline=None)
@given(scale=st.tuples(*[st.integers(-40, 38)] * 4), seed=st.integers(0, 2**16),
       t=st.integers(1, 10**6), lr=st.sampled_from([1e-3, 1.0, 1e10, 1e30]),
       betas=st.tuples(st.sampled_from([0.0, 0.5, 0.9, 0.99]), st.sampled_from([0.0, 0.9, 0.999, 0.999999])),
       eps=st.sampled_from([1e-30, 1e-8, 1e-4, 1.0]), weight_decay=st.sampled_from([0.0, 0.1, 1e20]))
def test_a_step_taken_in_place_is_finite_and_the_ops_update(scale, seed, t, lr, betas, eps, weight_decay):
    # magnitudes from 1e-40 (subnormal) to 1e38 (near FLT_MAX) in each of p, g, m, v: the bounds must refuse
    # every step whose results could overflow, and a step they accept must be the op's, bit for bit
    tensors = state(seed, scale)
    for ts in tensors:
        for x in ts:
            x.nan_to_num_(posinf=3e38, neginf=-3e38)  # a scale of 1e38 times randn may overflow float32
    hyper = (t, lr, *betas, eps, weight_decay)
    result, clones = step(tensors, hyper)
    if result is None:
        for ours, before in zip(clones, tensors):
            for a, b in zip(ours, before):
                assert same_bits(a, b)
    else:
        check_taken(tensors, hyper)
    if max(scale) <= 10 and lr <= 1.0 and weight_decay <= 0.1 and eps >= 1e-8:
        assert result is not None  # far from overflow the fast path is taken
        assert math.isfinite(float(max(x.abs().max() for x in clones[0])))
