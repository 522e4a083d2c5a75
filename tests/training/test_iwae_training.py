"""fit(objective="iwae") against the plain PyTorch reference loop (tests/reference/training.py: the documented
generator calls, one randperm per epoch and one normal_ of [k, batch, Z] per batch, pixel > threshold, the
gradient of -mean(IWAE bound) by the estimator's definition in the reference VAE, torch.optim.Adam), for one
update and over ten. In float32 the IWAE gradient carries ~1e-4 relative rounding (log weights of ~-500 nats
enter a softmax), and Adam with a small eps turns such differences into whole steps on near-zero gradients, which
then compound; the ten-update comparison therefore uses Adam eps = 1 and lr = 0.01 (step ~ 0.01 * gradient), which
keeps every part of the loop in play (shuffling, noise draws, the short batch, the second epoch, the estimator: a
reference run with another estimator fails every case) without amplifying rounding."""
import pytest

import fastvae
from fastvae.datasets import load_mnist
from reference.training import assert_trained_alike, reference_fit
from reference.vae import MlpReference


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    x, y = load_mnist("train", root=mnist_dir)
    return x[:200].reshape(200, -1), y[:200]


class Stop(Exception):
    pass


@pytest.mark.parametrize("updates", [1, 10])
@pytest.mark.parametrize("estimator", ["reparam", "stl", "dreg"])
@pytest.mark.parametrize("name", ["stats305c", "ese546", "cvae_hw7", "dd2434"])
def test_iwae_fit_matches_plain_pytorch_loop(name, estimator, updates, mnist, two_threads):
    x, y = mnist  # batches 64, 64, 64, 8: ten updates cross two epochs and a short batch
    if name == "ese546":
        x = fastvae.datasets.subsample(x.reshape(-1, 28, 28)).reshape(200, -1)
    labels = y if name == "cvae_hw7" else None
    model = fastvae.VAE.from_preset(name)
    ref = MlpReference(model, name)
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
    reference_fit(ref, x, labels, updates=updates, objective="iwae", iwae_estimator=estimator, **settings)
    # eps = 1 in the 10-update runs: Adam steps scale with the gradient, so a flip moves weights far less
    assert_trained_alike(model, ref, max_diff=1e-3, min_close=0.99)


def test_iwae_history_records_the_bound(mnist):
    x, _ = mnist
    x = fastvae.datasets.subsample(x.reshape(-1, 28, 28)).reshape(200, -1)
    model = fastvae.VAE.from_preset("ese546")
    ref = MlpReference(model, "ese546")
    hist = model.fit(x, epochs=1, batch_size=200, k=7, objective="iwae", seed=1, progress=False)
    # the single update's recorded value is the bound of the starting weights on the batch it drew
    run = reference_fit(ref, x, epochs=1, batch_size=200, k=7, objective="iwae", seed=1)
    assert hist.update_rec[0] == pytest.approx(run.update_rec[0], rel=1e-5)
    assert hist.train_elbo[0] == pytest.approx(run.train_elbo[0], rel=1e-5)
    assert (hist.update_kl == 0).all()
