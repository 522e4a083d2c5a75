"""fit with a categorical latent (issue 9 item 3) against the plain PyTorch reference loop (tests/reference/
training.py: the documented generator calls, one randperm per epoch and one uniform_ of [L, batch, N*K] per batch
clamped to float32's smallest normal number, pixel > threshold, the loss -mean(rec - kl) of the reference VAE's
Gumbel-softmax ELBO at the annealed temperature tau_t = max(tau_min, tau_0 exp(-r * floor(t / anneal_every) *
anneal_every)) (Jang et al. 2017), torch.optim.Adam); the schedule resuming exactly across fit calls; and the test
ELBO of the hard (discrete) samples."""
import pytest
import torch

import fastvae
from fastvae.datasets import load_mnist
from reference.training import Draws, assert_same_weights, reference_fit
from reference.vae import MlpReference

@pytest.fixture(scope="module")
def mnist(mnist_dir):
    x, y = load_mnist("train", root=mnist_dir)
    return x[:200].reshape(200, -1), y[:200]


class Stop(Exception):
    pass


def categorical(cond=0):
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=784, latent_dim=20, categories=10, latent="categorical", encoder_hidden=(64,),
                       decoder_hidden=(64,), cond_dim=cond)


@pytest.mark.parametrize("hard,cond", [(False, 0), (True, 10)], ids=["soft", "hard-conditional"])
def test_fit_matches_plain_pytorch_loop_with_annealing(hard, cond, mnist, two_threads):
    x, y = mnist  # batches 64, 64, 64, 8: ten updates cross two epochs and a short batch
    labels = y if cond else None
    model = categorical(cond)
    ref, other = MlpReference(model), MlpReference(model)
    sched = dict(temperature=1.0, temperature_min=0.5, anneal_rate=0.1, anneal_every=3)
    settings = dict(batch_size=64, n_samples=2, lr=1e-2, eps=1.0, seed=5, hard=hard, **sched)
    updates = 10

    def stop(event, info):
        if event == "step" and info["update"] == updates:
            raise Stop

    with pytest.raises(Stop):
        model.fit(x, train_labels=labels, epochs=3, progress=False, callback=stop, callback_every=1, **settings)
    taus = reference_fit(ref, x, labels, updates=updates, **settings).temperatures
    assert len(set(taus)) == 4 and min(taus) == 0.5  # the schedule moved 1 -> e^-0.3 -> e^-0.6 -> floor 0.5
    # Adam eps 1 keeps float32 rounding of the two gradient codes from turning into whole steps
    assert_same_weights(model, ref, rtol=1e-5, atol=1e-5)
    # a reference without annealing ends elsewhere: the schedule is in play
    reference_fit(other, x, labels, updates=updates, **{**settings, "anneal_rate": 0.0})
    assert max((p - q.detach()).abs().max().item() for p, q in zip(model.flat_parameters(), other.flat_parameters())) > 1e-4


def test_annealing_resumes_exactly_across_fit_calls(mnist, tmp_path):
    x, _ = mnist
    opts = fastvae.TrainOptions(batch_size=50, n_samples=1, temperature=2.0, temperature_min=0.3, anneal_rate=0.2,
                                anneal_every=3)
    once = categorical()
    once.fit(x, options=opts, epochs=2, seed=3, progress=False)
    twice = categorical()
    twice.fit(x, options=opts, epochs=1, seed=3, progress=False, checkpoint=tmp_path / "c.pt")
    resumed = fastvae.VAE.load(tmp_path / "c.pt")
    resumed.fit(x, options=opts, epochs=1, progress=False)
    for p, q in zip(once.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_test_elbo_is_the_hard_discrete_elbo(mnist):
    """The loop's test ELBO uses hard (Gumbel-max) samples: it equals the reference's hard ELBO (any temperature)
    on the pixels and noise the loop draws after the epoch's training draws."""
    x, _ = mnist
    model = categorical()
    hist = model.fit(x[:100], epochs=1, batch_size=100, seed=2, progress=False, test_images=x[100:150],
                     temperature=0.7)
    draws = Draws(2)  # the epoch's draws (order, pixels, noise), then the test images'
    draws.order(100)
    draws.noise(1, 100, 200, categorical=True)
    u = draws.noise(1, 50, 200, categorical=True)
    ref = MlpReference(model)  # the trained weights
    with torch.no_grad():
        expected = ref.elbo(draws.pixels(x[100:150]), u, hard=True, temperature=5.0).mean()
    assert hist.test_elbo[0] == pytest.approx(expected.item(), rel=1e-5)
