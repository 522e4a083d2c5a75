"""Checkpoints of VAEs around users' own networks: a saved run resumes exactly; other files are refused."""
import numpy as np
import pytest
import torch
from torch import nn

import fastvae
from fastvae import NetworkVAE

F64 = torch.float64
D, Z = 12, 2


def _nets(seed=0, dtype=F64, out=D):
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 2 * Z)).to(dtype)
    dec = nn.Sequential(nn.Linear(Z, 8), nn.Tanh(), nn.Linear(8, out)).to(dtype)
    return enc, dec


def _images(n=50, seed=1):
    return (torch.rand(n, D, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)


@pytest.mark.parametrize("objective", [dict(), dict(objective="iwae", k=3, iwae_estimator="dreg")])
def test_checkpoint_resumes_exactly(tmp_path, objective):
    images, test = _images(), _images(20, seed=2)
    kw = dict(batch_size=16, pixels="dynamic", progress=False, test_images=test, **objective)
    a = fastvae.VAE.from_networks(*_nets(), Z)
    a.fit(images, epochs=2, seed=9, **kw)
    b = fastvae.VAE.from_networks(*_nets(), Z)
    b.fit(images, epochs=1, seed=9, checkpoint=tmp_path / "m.pt", **kw)
    c = NetworkVAE.load(tmp_path / "m.pt", *_nets(seed=123))
    c.fit(images, epochs=1, **kw)
    for p, q in zip(a.parameters(), c.parameters()):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(a.history_.update_rec, c.history_.update_rec)
    np.testing.assert_array_equal(a.history_.test_elbo, c.history_.test_elbo)


def test_load_refuses_other_files(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(fastvae.CheckpointError, match="not a fastvae checkpoint"):
        NetworkVAE.load(path, *_nets())
    model = fastvae.VAE.from_networks(*_nets(), Z)
    model.save(tmp_path / "m.pt")
    with pytest.raises(fastvae.CheckpointError, match="holds an invalid checkpoint"):
        NetworkVAE.load(tmp_path / "m.pt", *_nets(out=D + 1))
