"""fit of VAEs around users' own networks (fastvae.VAE.from_networks): the Python training loop against the
plain-PyTorch reference loop with the same draws (tests/reference/training.py: the reference VAE on the same
networks, torch.optim.Adam), and divergence."""

import numpy as np
import pytest
import torch
from torch import nn

import fastvae
from reference.training import assert_same_weights, reference_fit
from reference.vae import NetworkReference
from fastvae import TrainingDivergedError

F64 = torch.float64
D, Z = 12, 2


def _nets(seed=0, dtype=F64, out=D):
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 2 * Z)).to(dtype)
    dec = nn.Sequential(nn.Linear(Z, 8), nn.Tanh(), nn.Linear(8, out)).to(dtype)
    return enc, dec


def _images(n=50, seed=1):
    return (torch.rand(n, D, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)


@pytest.mark.parametrize("likelihood, pixels, estimator", [("bernoulli", "dynamic", "mc"),
                                                            ("continuous_bernoulli", "intensity", "stl")])
def test_fit_matches_plain_pytorch_loop(likelihood, pixels, estimator):
    images = _images()
    kw = dict(epochs=2, batch_size=20, n_samples=3, lr=3e-3)
    model = fastvae.VAE.from_networks(*_nets(), Z, likelihood=likelihood)
    ref = NetworkReference(*_nets(), Z, likelihood=likelihood)  # the same networks and weights
    hist = fastvae.training.fit(model, images, seed=5, progress=False, pixels=pixels, estimator=estimator, **kw)
    reference_fit(ref, images, seed=5, pixels=pixels, estimator=estimator, **kw)
    assert_same_weights(model, ref, atol=1e-10, rtol=1e-10)
    assert len(hist.update_rec) == 6 and len(hist.train_elbo) == 2 and np.all(np.isnan(hist.test_elbo))


def test_divergence_keeps_the_last_good_parameters():
    model = fastvae.VAE.from_networks(*_nets(), Z)
    seen = []

    def poison(event, info):  # after the 2nd update, make the decoder's output infinite
        seen.append([p.detach().clone() for p in model.parameters()])
        if info["update"] == 2:
            with torch.no_grad():
                model.decoder[2].bias.fill_(float("inf"))
    with pytest.raises(TrainingDivergedError, match="non-finite loss at update 3"):
        model.fit(_images(), epochs=1, batch_size=10, seed=1, progress=False, callback=poison, callback_every=1)
    assert len(model.history_.update_rec) == 2
