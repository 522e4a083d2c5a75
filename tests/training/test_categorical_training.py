"""fit with a categorical latent (issue 9 item 3) against a plain PyTorch loop: the same generator calls as
cpp/train_loop.cpp (one randperm per epoch, one uniform_ of [L, batch, N*K] per batch, clamped to float32's
smallest normal number), pixel > threshold, the loss -mean(rec - kl) through fastvae.elbo at the annealed
temperature tau_t = max(tau_min, tau_0 exp(-r * floor(t / anneal_every) * anneal_every)) (Jang et al. 2017),
torch.optim.Adam; and the schedule resuming exactly across fit calls."""
import math

import pytest
import torch

import fastvae
from fastvae.datasets import load_mnist

TINY = torch.finfo(torch.float32).tiny


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    x, y = load_mnist("train", root=mnist_dir)
    return x[:200].reshape(200, -1), y[:200]


def tau_at(t, tau0, tau_min, rate, every):
    return max(tau_min, tau0 * math.exp(-rate * (t // every * every)))


def reference_fit(model, images, labels, *, updates, batch_size, n_samples, lr, eps, seed, hard, temperature,
                  temperature_min, anneal_rate, anneal_every, threshold=127):
    g = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=eps)
    done, taus = 0, []
    while done < updates:
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            xb = (images[idx] > threshold).float()
            u = torch.empty(n_samples, len(idx), model.code_dim).uniform_(0, 1, generator=g).clamp_min_(TINY)
            tau = tau_at(done, temperature, temperature_min, anneal_rate, anneal_every)
            taus.append(tau)
            out = fastvae.elbo(model, xb, eps=u, y=None if labels is None else labels[idx], temperature=tau, hard=hard)
            loss = -(out.rec - out.kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == updates:
                return taus
    return taus


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
    model, ref = categorical(cond), categorical(cond)
    ref.load_state_dict(model.state_dict())
    sched = dict(temperature=1.0, temperature_min=0.5, anneal_rate=0.1, anneal_every=3)
    settings = dict(batch_size=64, n_samples=2, lr=1e-2, eps=1.0, seed=5, hard=hard, **sched)
    updates = 10

    def stop(event, info):
        if event == "step" and info["update"] == updates:
            raise Stop

    with pytest.raises(Stop):
        model.fit(x, train_labels=labels, epochs=3, progress=False, callback=stop, callback_every=1, **settings)
    taus = reference_fit(ref, x, labels, updates=updates, **settings)
    assert len(set(taus)) == 4 and min(taus) == 0.5  # the schedule moved 1 -> e^-0.3 -> e^-0.6 -> floor 0.5
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        # Adam eps 1 keeps float32 rounding of the two gradient codes from turning into whole steps
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: {m}")
    # a reference without annealing ends elsewhere: the schedule is in play
    other = categorical(cond)
    reference_fit(other, x, labels, updates=updates, **{**settings, "anneal_rate": 0.0})
    assert max((p - q).abs().max().item() for p, q in zip(model.parameters(), other.parameters())) > 1e-4


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
    """The loop's test ELBO uses hard (Gumbel-max) samples: with one image per chunk row it equals
    fastvae.elbo(hard=True) on the noise the loop draws after the epoch's training draws."""
    x, _ = mnist
    model = categorical()
    hist = model.fit(x[:100], epochs=1, batch_size=100, seed=2, progress=False, test_images=x[100:150],
                     temperature=0.7)
    g = torch.Generator().manual_seed(2)
    torch.randperm(100, generator=g)
    torch.empty(1, 100, 200).uniform_(0, 1, generator=g)
    u = torch.empty(1, 50, 200).uniform_(0, 1, generator=g).clamp_min_(TINY)
    with torch.no_grad():
        expected = fastvae.elbo(model, (x[100:150] > 127).float(), eps=u, hard=True, temperature=5.0).elbo.mean()
    assert hist.test_elbo[0] == pytest.approx(expected.item(), rel=1e-5)
