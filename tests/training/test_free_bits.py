"""fit(free_bits=lambda) (Kingma et al. 2016, arXiv 1606.04934, one group per latent dimension): the KL term
of the ELBO objective becomes sum_j max(lambda, KL_j), KL_j the minibatch mean analytic KL of dimension j.
Checked against the plain PyTorch reference loop (tests/reference/training.py: the documented generator calls, the
reference VAE's ELBO and per-dimension KL with torch.distributions, torch.optim.Adam); the recorded update_kl stays
the true KL."""
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


SETTINGS = dict(batch_size=64, n_samples=2, lr=1e-3, betas=(0.9, 0.99), eps=1e-3, threshold=127, kl_weight=1.0,
                kl_warmup=0, seed=3)


def median_kl(model, images):
    with torch.no_grad():
        return MlpReference(model, "ese546").kl_per_dim((images > 127).float()).mean(0).median().item()


@pytest.mark.parametrize("warmup", [0, 4])
def test_free_bits_matches_plain_pytorch_loop(mnist, warmup):
    model = fastvae.VAE.from_preset("ese546")
    ref = MlpReference(model, "ese546")
    lam = median_kl(model, mnist)  # about half of the dimensions under the floor
    settings = {**SETTINGS, "free_bits": lam, "kl_warmup": warmup}
    hist = model.fit(mnist, epochs=3, progress=False, **settings)  # 12 updates
    run = reference_fit(ref, mnist, updates=12, **settings)
    assert 0 < run.floored < 12 * model.latent_dim  # both branches of max(lambda, KL_j) are exercised
    assert_same_weights(model, ref, rtol=1e-5, atol=2e-6)
    # the recorded KL is the true minibatch KL, not the floored objective term
    torch.testing.assert_close(torch.as_tensor(hist.update_kl), torch.tensor(run.update_kl, dtype=torch.float64),
                               rtol=1e-4, atol=1e-5)


def test_a_floor_above_every_kl_removes_the_kl_gradient(mnist):
    torch.manual_seed(0)
    a = fastvae.VAE.from_preset("ese546")
    b = fastvae.VAE.from_preset("ese546")
    b.load_state_dict(a.state_dict())
    a.fit(mnist, epochs=1, progress=False, **{**SETTINGS, "free_bits": 1e6})
    b.fit(mnist, epochs=1, progress=False, **{**SETTINGS, "kl_weight": 0.0})
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)  # every dimension under the floor: the KL contributes no gradient
    assert a.history_.update_kl.min() > 0  # still the true KL


def test_free_bits_resumes_and_is_saved(mnist, tmp_path):
    torch.manual_seed(0)
    a = fastvae.VAE.from_preset("ese546")
    b = fastvae.VAE.from_preset("ese546")
    b.load_state_dict(a.state_dict())
    settings = {**SETTINGS, "free_bits": median_kl(a, mnist)}
    a.fit(mnist, epochs=2, progress=False, **settings)
    b.fit(mnist, epochs=1, progress=False, **settings)
    b.save(tmp_path / "m.pt")
    c = fastvae.VAE.load(tmp_path / "m.pt")
    assert c.train_options_.free_bits == settings["free_bits"]
    c.fit(mnist, epochs=1, progress=False, options=c.train_options_, seed=None)
    for p, q in zip(a.parameters(), c.parameters()):
        assert torch.equal(p, q)
