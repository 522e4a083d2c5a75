"""The engine's weight-gradient product C = A^T B (cpp/cpu/gemm.h, gemm_at_b): its own register tiles of 4 rows
by 24 or 8 columns, then row and column tails, against the float64 product, for every tail shape; it writes C and
nothing beside it, keeps NaN and inf, and gives +0 where the sum is -0 (as BLAS's C = 0 + sum)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastvae import _C


def reference(a, b):
    return (a.double().t() @ b.double()).float()


def check(K, M, N, seed, lda_extra=0, ldb_extra=0, pad=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(K, M + lda_extra, generator=g)[:, :M]  # leading dimensions wider than the rows
    b = torch.randn(K, N + ldb_extra, generator=g)[:, :N]
    c = _C._gemm_at_b(a, b, pad)
    torch.testing.assert_close(c[:, :N], reference(a, b), rtol=1e-5, atol=1e-5 * max(K, 1) ** 0.5)
    assert bool(c[:, N:].isnan().all())  # nothing written beside C


# (K, M, N): M % 4 in 0..3 (row tails), N with 3-vector tiles, single vectors and scalar columns, K from 0 to
# past a batch; the IWAE paper model's weight gradients at batch 20.
SHAPES = [(20, 200, 784), (20, 784, 200), (20, 100, 200), (20, 200, 50), (1, 1, 1), (0, 5, 9), (3, 7, 25),
          (64, 6, 31), (257, 2, 8), (5, 3, 24), (20, 4, 48), (11, 9, 17)]


@pytest.mark.parametrize("K,M,N", SHAPES)
def test_matches_the_float64_product(K, M, N):
    check(K, M, N, seed=K * 1000 + M + N, lda_extra=3, ldb_extra=5, pad=2)


@settings(max_examples=60, deadline=None)
@given(K=st.integers(0, 40), M=st.integers(1, 13), N=st.integers(1, 60), seed=st.integers(0, 2**16))
def test_matches_the_float64_product_on_any_shape(K, M, N, seed):
    check(K, M, N, seed, lda_extra=seed % 3, ldb_extra=seed % 5, pad=seed % 2)


def test_zero_sums_are_positive_and_non_finite_entries_propagate():
    a = torch.zeros(4, 5)
    b = torch.zeros(4, 30)
    a[3], b[3] = -1e-30, 1e-30  # the last product, -1e-60, rounds to -0: the chain's sum is -0
    c = _C._gemm_at_b(a, b)
    assert bool((c == 0).all()) and not bool(torch.signbit(c).any())  # +0 in every tile and tail
    b[2, 3] = float("inf")
    a[2, 1] = 1.0
    b[1, 27] = float("nan")
    c = _C._gemm_at_b(a, b)
    assert c[1, 3] == float("inf") and bool(c[:, 27].isnan().all())
    assert bool(c[0, 3].isnan())  # 0 * inf


def test_bad_arguments_are_refused():
    with pytest.raises(RuntimeError, match="a \\[K, M\\] and b \\[K, N\\] float32"):
        _C._gemm_at_b(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(RuntimeError, match="float32"):
        _C._gemm_at_b(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64))
