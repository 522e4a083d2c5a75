"""fit(objective="iwae") against a plain PyTorch loop: the same generator calls as cpp/train_loop.cpp (one
randperm per epoch, one normal_ of [k, batch, Z] per batch), pixel > threshold, the gradient of
-mean(IWAE bound) and torch.optim.Adam. The gradient comes from the torch.distributions reference
(reference_iwae.py) for the first update, and from fastvae.iwae (the dense op, itself checked against that
reference in float64 in test_iwae.py) over ten updates, as test_training.py's reference_fit does. In float32
the IWAE gradient carries ~1e-4 relative rounding (log weights of ~-500 nats enter a softmax), and Adam with a
small eps turns such differences into whole steps on near-zero gradients, which then compound; the ten-update
comparison therefore uses Adam eps = 1 and lr = 0.01 (step ~ 0.01 * gradient), which keeps every part of the
loop in play (shuffling, noise draws, the short batch, the second epoch, the estimator: a reference run with
another estimator fails every case) without amplifying rounding."""
import pytest
import torch

import fastvae
from fastvae.datasets import load_mnist
from reference_iwae import ref_grads
from reference_training import assert_trained_alike
from reference_vaes import RefVAE


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    x, y = load_mnist("train", root=mnist_dir)
    return x[:200].reshape(200, -1), y[:200]


def reference_iwae_fit(model, name, images, labels, *, updates, batch_size, k, estimator, lr, betas, eps,
                       threshold, seed, torch_reference):
    g = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps)
    done = 0
    while done < updates:
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            xb = (images[idx] > threshold).float()
            e = torch.empty(k, len(idx), model.latent_dim).normal_(0, 1, generator=g)
            u = torch.full((len(idx),), -1.0 / len(idx))  # minimise -mean bound
            yb = None if labels is None else labels[idx]
            if torch_reference:
                grads = ref_grads(RefVAE(model, name), xb, e, yb, u, estimator)
            else:
                grads = torch.autograd.grad((u * fastvae.iwae(model, xb, eps=e, y=yb, estimator=estimator)).sum(),
                                            model.flat_parameters())
            for p, gr in zip(model.flat_parameters(), grads):
                p.grad = gr.detach().clone()
            opt.step()
            done += 1
            if done == updates:
                return


class Stop(Exception):
    pass


@pytest.mark.parametrize("updates,torch_reference", [(1, True), (10, False)])
@pytest.mark.parametrize("estimator", ["reparam", "stl", "dreg"])
@pytest.mark.parametrize("name", ["stats305c", "ese546", "cvae_hw7", "dd2434"])
def test_iwae_fit_matches_plain_pytorch_loop(name, estimator, updates, torch_reference, mnist, two_threads):
    x, y = mnist  # batches 64, 64, 64, 8: ten updates cross two epochs and a short batch
    if name == "ese546":
        x = fastvae.datasets.subsample(x.reshape(-1, 28, 28)).reshape(200, -1)
    labels = y if name == "cvae_hw7" else None
    model = fastvae.VAE.from_preset(name)
    ref = fastvae.VAE.from_preset(name)
    ref.load_state_dict(model.state_dict())
    settings = dict(batch_size=64, k=5, lr=1e-3 if updates == 1 else 1e-2, betas=(0.9, 0.99),
                    eps=1e-3 if updates == 1 else 1.0, threshold=127, seed=5)

    def stop(event, info):
        if event == "step" and info["update"] == updates:
            raise Stop

    with pytest.raises(Stop):
        model.fit(x, train_labels=labels, epochs=3, progress=False, callback=stop, callback_every=1, objective="iwae",
                  iwae_estimator=estimator, **settings)
    assert model.optimizer_state_.step == updates
    hist = model.history_
    assert hist.update_rec.shape == (updates,) and (hist.update_kl == 0).all()
    assert model.train_options_.objective == "iwae" and model.train_options_.iwae_estimator == estimator
    reference_iwae_fit(ref, name, x, labels, updates=updates, estimator=estimator, torch_reference=torch_reference,
                       **settings)
    # eps = 1 in the 10-update runs: Adam steps scale with the gradient, so a flip moves weights far less
    assert_trained_alike(model, ref, max_diff=1e-3, min_close=0.99)


def test_iwae_history_records_the_bound(mnist):
    x, _ = mnist
    x = fastvae.datasets.subsample(x.reshape(-1, 28, 28)).reshape(200, -1)
    model = fastvae.VAE.from_preset("ese546")
    start = fastvae.VAE.from_preset("ese546")
    start.load_state_dict(model.state_dict())
    hist = model.fit(x, epochs=1, batch_size=200, k=7, objective="iwae", seed=1, progress=False)
    # the single update's recorded value is the bound of the starting weights on the batch it drew
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(200, generator=g)
    eps = torch.empty(7, 200, start.latent_dim).normal_(0, 1, generator=g)
    with torch.no_grad():
        bound = fastvae.iwae(start, (x[perm] > 127).float(), eps=eps).mean().item()
    assert hist.update_rec[0] == pytest.approx(bound, rel=1e-5)
    assert hist.train_elbo[0] == pytest.approx(bound, rel=1e-5)
