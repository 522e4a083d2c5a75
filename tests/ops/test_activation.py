"""The engine's activation pass (cpp/cpu/activation.h, bias_act_row, through _C._activation): every activation
against torch's, float32 and float64, with and without a bias, for every row length around the vector width; and
the float32 tanh (tanh_vec, cpp/cpu/vec_math.h) against float64 tanh over a dense sample of all normal floats:
at most 1.35 ulp, odd bit for bit, and right on +-0, +-inf, NaN and the subnormals that the engine's flush-to-zero
mode reads as zero."""
import pytest
import torch
import torch.nn.functional as F

from fastvae import _C

FLOAT32_MAX_ULP = 1.35  # tanh_vec's documented bound (Sleef's tanhf, torch's, is 1.0)


def reference(name, x, slope):
    return {"identity": lambda v: v, "relu": F.relu, "leaky_relu": lambda v: F.leaky_relu(v, slope),
            "tanh": torch.tanh, "sigmoid": torch.sigmoid}[name](x)


def ulp_error(y, x):
    """|y - tanh(x)| in units of the float32 spacing at tanh(x), the exact value taken in float64."""
    exact = torch.tanh(x.double())
    mag = exact.float().abs()
    spacing = torch.nextafter(mag, torch.tensor(float("inf"))).double() - mag.double()
    return (y.double() - exact).abs() / spacing


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", _C.ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_torch_for_every_row_length(dtype, name, with_bias):
    g = torch.Generator().manual_seed(len(name))
    for n in range(1, 20):
        x = torch.randn(3, n, generator=g, dtype=dtype) * 4
        b = torch.randn(n, generator=g, dtype=dtype) if with_bias else None
        got = _C._activation(x, b, name, 0.2)
        want = reference(name, x + b if with_bias else x, 0.2)
        torch.testing.assert_close(got, want, rtol=4e-7 if dtype == torch.float32 else 1e-15, atol=0)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_an_entry_does_not_depend_on_its_column(name):
    """The entries after the last whole vector go through the same vector code: a value gives the same bits
    wherever it sits in the row."""
    x = torch.randn(1, 64, generator=torch.Generator().manual_seed(5)) * 3
    full = _C._activation(x, None, name)
    for start in range(0, 9):
        for n in range(1, 18):
            part = _C._activation(x[:, start:start + n].clone(), None, name)
            assert torch.equal(part, full[:, start:start + n]), (start, n)


def test_float32_tanh_is_within_its_ulp_bound_over_the_normal_floats():
    # every 37th bit pattern from the smallest normal float to +inf (excluded): 57 million values
    bits = torch.arange(0x00800000, 0x7F800000, 37, dtype=torch.int64).to(torch.int32)
    x = bits.view(torch.float32)
    worst = 0.0
    for chunk in x.split(1 << 24):
        y = _C._activation(chunk.reshape(1, -1), None, "tanh")[0]
        worst = max(worst, ulp_error(y, chunk).max().item())
        assert torch.equal(_C._activation(-chunk.reshape(1, -1), None, "tanh")[0], -y)  # odd, bit for bit
    assert worst <= FLOAT32_MAX_ULP
    assert worst > 0.5  # not correctly rounded everywhere: the check measured the kernel, not torch


def test_float32_tanh_special_values():
    x = torch.tensor([[0.0, -0.0, float("inf"), float("-inf"), float("nan"), 10.0, 9.02, 0.625, 1e-40, -1e-40]])
    y = _C._activation(x, None, "tanh")[0]
    assert y[:4].tolist() == [0.0, 0.0, 1.0, -1.0]
    assert torch.signbit(y[1]) and not torch.signbit(y[0])
    assert torch.isnan(y[4])
    assert y[5] == 1.0 and y[6] == 1.0  # tanh rounds to 1 from 9.01 on
    assert ulp_error(y[7:8], x[0, 7:8]).item() <= FLOAT32_MAX_ULP
    # subnormal inputs are read as zero by the engine's flush-to-zero mode, keeping their sign
    assert y[8] == 0 and y[9] == 0 and torch.signbit(y[9]) and not torch.signbit(y[8])


@pytest.mark.parametrize("x,bias,name,match", [
    (torch.zeros(2, 3), None, "softplus", "activation"),
    (torch.zeros(3), None, "tanh", r"x \[R, n\]"),
    (torch.zeros(2, 3, dtype=torch.int32), None, "tanh", "float32 or float64"),
    (torch.zeros(2, 3), torch.zeros(4), "tanh", r"bias \[n\]"),
    (torch.zeros(2, 3), torch.zeros(3, dtype=torch.float64), "tanh", "of its dtype"),
])
def test_bad_input_raises(x, bias, name, match):
    with pytest.raises((RuntimeError, ValueError), match=match):
        _C._activation(x, bias, name)
