"""fit(kl_warmup=n): the ELBO objective's KL weight rises linearly, kl_weight * min(1, t / n) at the update
after t optimizer steps, checked against the plain PyTorch reference loop (tests/reference/training.py: the documented
generator calls, the reference VAE and torch.optim.Adam); and resumed fits continue the schedule from the optimizer's step."""
import pytest
import torch

import fastvae
from fastvae.datasets import load_mnist
from reference.training import assert_same_weights, reference_fit
from reference.vae import MlpReference


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    x, _ = load_mnist("train", root=mnist_dir)
    return fastvae.datasets.subsample(x[:200]).reshape(200, -1)  # ESE 546's 14x14 images


SETTINGS = dict(batch_size=64, n_samples=2, lr=1e-3, betas=(0.9, 0.99), eps=1e-3, threshold=127, kl_weight=2.0,
                kl_warmup=6, seed=3)


def test_warmup_matches_plain_pytorch_loop(mnist):
    model = fastvae.VAE.from_preset("ese546")
    ref = MlpReference(model, "ese546")
    model.fit(mnist, epochs=3, progress=False, **SETTINGS)  # 12 updates: 6 warming, 6 at full weight
    reference_fit(ref, mnist, updates=12, **SETTINGS)
    assert_same_weights(model, ref, rtol=1e-5, atol=2e-6)


def test_warmup_changes_training_and_resumes_exactly(mnist):
    torch.manual_seed(0)
    a = fastvae.VAE.from_preset("ese546")
    b = fastvae.VAE.from_preset("ese546")
    c = fastvae.VAE.from_preset("ese546")
    b.load_state_dict(a.state_dict())
    c.load_state_dict(a.state_dict())
    a.fit(mnist, epochs=2, progress=False, **SETTINGS)
    b.fit(mnist, epochs=1, progress=False, **SETTINGS)
    b.fit(mnist, epochs=1, progress=False, **{k: v for k, v in SETTINGS.items() if k != "seed"})
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)  # the warm-up follows the optimizer's step across fits
    c.fit(mnist, epochs=2, progress=False, **{**SETTINGS, "kl_warmup": 0})
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
