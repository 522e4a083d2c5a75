"""fit with the Gaussian likelihood's learned per-pixel scale and decoder-predicted log-variance (issue 9 item 1)
against the plain PyTorch reference loop (tests/reference/training.py)."""
import math

import pytest
import torch

import fastvae
from reference.training import assert_same_weights, reference_fit
from reference.vae import MlpReference

SCALES = ["learned", "predicted"]


def images(n=96, D=16, seed=0):
    return torch.randint(0, 256, (n, D), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def train_model(scale):
    torch.manual_seed(1)
    return fastvae.VAE(data_dim=16, latent_dim=3, encoder_hidden=(8,), decoder_hidden=(8,), likelihood="gaussian",
                       gaussian_sigma=0.5, gaussian_scale=scale, activation="tanh")


FIT = dict(batch_size=32, n_samples=2, lr=1e-2, betas=(0.9, 0.99), eps=1e-3, pixels="intensity")


@pytest.mark.parametrize("scale", SCALES)
def test_fit_matches_plain_pytorch_loop(scale):
    xs = images()
    model = train_model(scale)
    ref = MlpReference(model)
    model.fit(xs, epochs=3, seed=5, progress=False, **FIT)  # 9 updates
    reference_fit(ref, xs, updates=9, seed=5, **FIT)
    moved = False
    assert_same_weights(model, ref, rtol=1e-5, atol=2e-6)
    if scale == "learned":
        moved = not torch.allclose(model.log_sigma, torch.full((16,), math.log(0.5)))
        assert moved  # the log sigma is trained
        assert model.optimizer_state_.exp_avg[-1].shape == (16,)
