"""fit with the Gaussian likelihood's learned per-pixel scale and decoder-predicted log-variance (issue 9 item 1)
against a plain PyTorch loop."""
import math

import pytest
import torch

import fastvae

SCALES = ["learned", "predicted"]


def images(n=96, D=16, seed=0):
    return torch.randint(0, 256, (n, D), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def train_model(scale):
    torch.manual_seed(1)
    return fastvae.VAE(data_dim=16, latent_dim=3, encoder_hidden=(8,), decoder_hidden=(8,), likelihood="gaussian",
                       gaussian_sigma=0.5, gaussian_scale=scale, activation="tanh")


FIT = dict(batch_size=32, n_samples=2, lr=1e-2, betas=(0.9, 0.99), eps=1e-3, pixels="intensity")


def reference_fit(model, xs, *, updates, seed, batch_size, n_samples, lr, betas, eps, pixels):
    """cpp/train_loop.cpp in plain PyTorch: one randperm per epoch, intensities p / 255 (no draws), one
    normal_ of [L, batch, Z] per batch, fastvae.elbo and torch.optim.Adam over model.parameters()."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps)
    done = 0
    while done < updates:
        perm = torch.randperm(xs.shape[0], generator=g)
        for s in range(0, xs.shape[0], batch_size):
            idx = perm[s:s + batch_size]
            xb = xs[idx].float() / 255
            e = torch.empty(n_samples, len(idx), model.latent_dim).normal_(0, 1, generator=g)
            loss = -fastvae.elbo(model, xb, eps=e).elbo.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == updates:
                return


@pytest.mark.parametrize("scale", SCALES)
def test_fit_matches_plain_pytorch_loop(scale):
    xs = images()
    model, ref = train_model(scale), train_model(scale)
    model.fit(xs, epochs=3, seed=5, progress=False, **FIT)  # 9 updates
    reference_fit(ref, xs, updates=9, seed=5, **FIT)
    moved = False
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=2e-6, msg=lambda m: f"{name}: {m}")
    if scale == "learned":
        moved = not torch.allclose(model.log_sigma, torch.full((16,), math.log(0.5)))
        assert moved  # the log sigma is trained
        assert model.optimizer_state_.exp_avg[-1].shape == (16,)
