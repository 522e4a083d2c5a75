"""Dynamic binarization's draws (cpp/training/torch_uniform.h): fit takes torch's CPU ``uniform_`` floats in
bulk from its own copy of the Mersenne Twister. Held to ``uniform_`` bit for bit, and to the generator state
it leaves, through ``_C.gather_pixels``: from a fresh seed, from every offset in the engine's 624-number
state, across several refills, and on torch's default generator."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from fastvae import _C

D = 784


def images_and_rows(n, seed=0, d=D):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (max(n, 1) + 3, d), dtype=torch.uint8, generator=g)
    images[0] = 0  # all-black and all-white rows: p = 0 never draws a one, p = 1 always does
    images[1] = 255
    rows = torch.randperm(len(images), generator=g)[:n]
    return images, rows


def reference(images, rows, gen):
    """The definition fit follows: one uniform_ over the batch's n x D floats in row order, then u < p / 255."""
    u = torch.empty(len(rows), images.shape[1]).uniform_(0, 1, generator=gen)
    return (u < images[rows].float() / 255).float()


def assert_same_draws(n, seed, skip, d=D):
    images, rows = images_and_rows(n, d=d)
    ours, ref = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    if skip:  # start mid-state: uniform_ of `skip` floats moves the engine `skip` numbers on
        torch.empty(skip).uniform_(generator=ours)
        torch.empty(skip).uniform_(generator=ref)
    x = _C.gather_pixels(images, rows, 127, "dynamic", ours)
    torch.testing.assert_close(x, reference(images, rows, ref), rtol=0, atol=0)
    assert torch.equal(ours.get_state(), ref.get_state())
    # and the next draws of any kind agree: the state is whole, not only the engine's words
    assert torch.equal(torch.randn(7, generator=ours), torch.randn(7, generator=ref))


@pytest.mark.parametrize("n", [0, 1, 20, 64])
@pytest.mark.parametrize("skip", [0, 1, 623, 624, 625, 1000])
def test_gather_pixels_draws_what_uniform_draws(n, skip):
    assert_same_draws(n, seed=3, skip=skip)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 9), seed=st.integers(0, 2**63 - 1), skip=st.integers(0, 2000))
def test_gather_pixels_draws_what_uniform_draws_from_any_state(n, seed, skip):
    assert_same_draws(n, seed, skip)


def test_images_of_one_pixel_draw_what_uniform_draws_too():
    # one float per row: the state's refills land inside the batch at single rows
    assert_same_draws(2000, seed=5, skip=0, d=1)


def test_torch_default_generator_is_drawn_from_and_moved_as_uniform_moves_it():
    images, rows = images_and_rows(20)
    saved = torch.get_rng_state()
    try:
        torch.manual_seed(21)
        x = _C.gather_pixels(images, rows, 127, "dynamic", torch.default_generator)
        after = torch.get_rng_state()
        torch.manual_seed(21)
        ref = reference(images, rows, None)
        torch.testing.assert_close(x, ref, rtol=0, atol=0)
        assert torch.equal(after, torch.get_rng_state())
    finally:
        torch.set_rng_state(saved)
