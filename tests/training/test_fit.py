"""The C++ training loop (VAE.fit) on real MNIST: learning, reproducibility, clean interruption, errors."""
import _thread
import threading

import numpy as np
import pytest
import torch

import fastvae
from fastvae.datasets import load_mnist
from fastvae.training import TrainingDivergedError
from conftest import stop_at
from reference.training import assert_trained_alike, reference_fit
from reference.vae import MlpReference


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    x, y = load_mnist("train", root=mnist_dir)
    return x[:3000].reshape(3000, -1), y[:3000]


def assert_same_weights(a, b, **tol):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, msg=lambda m: f"{name}: {m}", **tol)


@pytest.mark.parametrize("name", ["stats305c", "ese546", "cvae_hw7", "dd2434"])
def test_fit_matches_plain_pytorch_loop(name, mnist, two_threads):
    x, y = mnist
    x, y = x[:200], y[:200]  # batches 64, 64, 64, 8: ten updates cross two epochs and a short batch
    if name == "ese546":
        x = fastvae.datasets.subsample(x.reshape(-1, 28, 28)).reshape(200, -1)
    labels = y if name == "cvae_hw7" else None
    model = fastvae.VAE.from_preset(name)
    ref = MlpReference(model, name)  # the pinned homework architecture with the model's starting weights
    # more than Adam's grain (32768 values) of parameters: with 2 threads, both get a chunk
    assert sum(p.numel() for p in model.parameters()) > 32768
    settings = dict(batch_size=64, n_samples=2, lr=1e-3, betas=(0.9, 0.99), eps=1e-3, threshold=127,
                    kl_weight=2.0 if labels is not None else 1.0, seed=5)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, train_labels=labels, epochs=3, progress=False, callback=stop_at(10), callback_every=1, **settings)
    assert model.optimizer_state_.step == 10
    reference_fit(ref, x, labels, updates=10, **settings)
    assert_trained_alike(model, ref, max_diff=3 * settings["lr"])


def test_fit_learns_and_records_history(mnist):
    x, _ = mnist
    model = fastvae.VAE.from_preset("stats305c")
    hist = model.fit(x[:2500], epochs=3, batch_size=64, test_images=x[2500:], seed=0, progress=False)
    n_updates = 3 * -(-2500 // 64)
    assert hist.update_rec.shape == (n_updates,) and hist.update_kl.shape == (n_updates,)
    assert hist.train_elbo.shape == (3,) and hist.test_elbo.shape == (3,) and hist.epoch_seconds.shape == (3,)
    assert np.all(np.isfinite(hist.test_elbo)) and np.all(hist.epoch_seconds > 0)
    assert hist.train_elbo[-1] > hist.train_elbo[0] + 20  # nats; a fresh model starts near -540
    assert hist.test_elbo[-1] > hist.test_elbo[0]
    assert np.all(hist.update_kl >= 0)  # analytic KL of Gaussians
    assert model.history_ is not None and model.optimizer_state_.step == n_updates


def test_fit_continues_and_is_reproducible(mnist):
    x, _ = mnist
    a, b = fastvae.VAE.from_preset("ese546"), fastvae.VAE.from_preset("ese546")
    b.load_state_dict(a.state_dict())
    small = fastvae.datasets.subsample(x[:1000].reshape(-1, 28, 28)).reshape(1000, -1)
    for m in (a, b):
        m.fit(small, epochs=1, batch_size=100, n_samples=2, threshold=128, seed=7, progress=False)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    a.fit(small, epochs=1, batch_size=100, n_samples=2, threshold=128, seed=8, progress=False)
    assert a.history_.update_rec.shape == (20,) and a.optimizer_state_.step == 20


def test_validation_curve_every_k_updates(mnist):
    x, _ = mnist
    model = fastvae.VAE.from_preset("stats305c")
    hist = model.fit(x[:1280], epochs=2, batch_size=64, val_images=x[2900:], eval_every=10, seed=0, progress=False)
    assert list(hist.val_update) == [0, 10, 20, 30, 40]
    assert hist.val_rec[-1] > hist.val_rec[0]


def test_conditional_fit(mnist):
    x, y = mnist
    model = fastvae.VAE.from_preset("cvae_hw7")
    hist = model.fit(x[:1000], train_labels=y[:1000], epochs=2, batch_size=64, test_images=x[2000:2200],
                     test_labels=y[2000:2200], seed=0, progress=False)
    assert hist.train_elbo[1] > hist.train_elbo[0]
    assert model.sample(5, y=3).shape == (5, 784)


def test_interrupt_from_callback_keeps_completed_steps(mnist, two_threads):
    x, _ = mnist
    model = fastvae.VAE.from_preset("stats305c")
    init = {k: v.clone() for k, v in model.state_dict().items()}

    def stop_after_five(event, info):
        if event == "step" and info["update"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(x, epochs=1, batch_size=64, eps=1e-3, seed=3, progress=False, callback=stop_after_five,
                  callback_every=1)
    assert model.history_.update_rec.shape == (5,) and model.optimizer_state_.step == 5
    # The interrupted model equals one trained for exactly those five updates with the same seed ...
    ref = fastvae.VAE.from_preset("stats305c")
    ref.load_state_dict(init)
    with pytest.raises(KeyboardInterrupt):
        ref.fit(x, epochs=1, batch_size=64, eps=1e-3, seed=3, progress=False, callback=stop_after_five,
                callback_every=1)
    assert_same_weights(model, ref, rtol=0, atol=0)
    # ... and the plain PyTorch loop's five updates.
    start = fastvae.VAE.from_preset("stats305c")
    start.load_state_dict(init)
    plain = MlpReference(start, "stats305c")
    reference_fit(plain, x, updates=5, batch_size=64, eps=1e-3, seed=3)
    assert_trained_alike(model, plain, max_diff=3e-3)


def test_fit_leaves_the_floating_point_mode_alone(mnist):
    # The engine flushes subnormal floats to zero on its threads (cpu/flush_denormals.h); the user's thread
    # gets its mode back after the run and inside callbacks: 1e-39 (subnormal in float32) still multiplies.
    x, _ = mnist
    tiny = torch.tensor([1e-39])
    assert (tiny * 1.0).item() > 0
    seen = []
    model = fastvae.VAE.from_preset("stats305c")
    model.fit(x[:128], epochs=1, batch_size=64, progress=False, seed=0, callback_every=1,
              callback=lambda event, info: seen.append((tiny * 1.0).item()))
    assert len(seen) == 3 and min(seen) > 0  # two updates and the epoch
    assert (tiny * 1.0).item() > 0


def test_ctrl_c_stops_cleanly(mnist):
    x, _ = mnist
    model = fastvae.VAE.from_preset("stats305c")
    timer = threading.Timer(0.5, _thread.interrupt_main)  # delivers SIGINT's KeyboardInterrupt
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, epochs=1000, batch_size=64, seed=0, progress=False)
    finally:
        timer.cancel()
    done = model.optimizer_state_.step
    assert 0 < done < 1000 * 47 and model.history_.update_rec.shape == (done,)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    xb = fastvae.datasets.binarize(x[:10].float() / 255)
    assert torch.isfinite(fastvae.elbo(model, xb).elbo).all()


def test_kl_weight_trades_kl_for_reconstruction(mnist):
    x, _ = mnist
    kls = []
    for beta in (1.0, 4.0):
        model = fastvae.VAE.from_preset("stats305c")
        torch.manual_seed(0)
        hist = model.fit(x[:2000], epochs=2, batch_size=64, kl_weight=beta, seed=0, progress=False)
        kls.append(hist.update_kl[-30:].mean())
    assert kls[1] < kls[0]  # a heavier KL weight keeps q closer to the prior


def test_divergence_raises_and_keeps_the_last_finite_parameters(mnist_dir):
    x, _ = load_mnist("train", root=mnist_dir)  # the STATS 305C preset on real MNIST at lr 0.5
    model = fastvae.VAE.from_preset("stats305c")
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingDivergedError, match=r"non-finite .* at update (\d+) \(epoch 1") as e:
        model.fit(x, epochs=1, batch_size=64, lr=0.5, seed=0, progress=False)
    assert isinstance(e.value, FloatingPointError) and "smaller learning rate" in str(e.value)
    done = model.optimizer_state_.step
    assert f"at update {done + 1} " in str(e.value) and f"after update {done};" in str(e.value)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model.history_.update_rec.shape == (done,) and np.isfinite(model.history_.update_rec).all()
    # The kept parameters are exactly those of a run stopped after `done` updates.
    ref = fastvae.VAE.from_preset("stats305c")
    ref.load_state_dict(init)
    with pytest.raises(KeyboardInterrupt):
        ref.fit(x, epochs=1, batch_size=64, lr=0.5, seed=0, progress=False, callback=stop_at(done), callback_every=1)
    assert_same_weights(model, ref, rtol=0, atol=0)


def test_fit_refuses_a_model_holding_nan_or_inf(mnist):
    x, _ = mnist
    for bad in (float("nan"), float("inf")):
        model = fastvae.VAE.from_preset("stats305c")
        with torch.no_grad():
            model.decoder[1].bias[3] = bad
        with pytest.raises(ValueError, match="decoder.1.bias contains NaN or inf"):
            model.fit(x[:64], progress=False)


def test_all_finite_finds_one_bad_value_anywhere(two_threads):
    ts = [torch.zeros(100_000), torch.ones(7, 3, dtype=torch.float64), torch.zeros(3, 5).t()]
    assert fastvae._C.all_finite(ts)
    for k, i in [(0, 0), (0, 70_000), (0, 99_999), (1, 20), (2, 14)]:
        for bad in (float("nan"), float("inf"), -float("inf")):
            t = [a.clone() for a in ts]
            t[k][np.unravel_index(i, tuple(t[k].shape))] = bad  # k = 2: a transposed (non-contiguous) tensor
            assert not fastvae._C.all_finite(t), (k, i, bad)
    assert fastvae._C.all_finite([torch.full((10,), 3e38)])  # large but finite


def test_readers_in_another_thread_see_whole_epochs(mnist):
    x, _ = mnist
    x = x[:256]
    model = fastvae.VAE.from_preset("stats305c")
    xb = (x[:32] > 127).float()
    snapshots = [model.encode(xb)[0].clone()]  # the weights a reader may see: before and after each epoch

    def on_epoch(event, info):
        if event == "epoch":
            snapshots.append(model.encode(xb)[0].clone())

    seen, errors, stop = [], [], threading.Event()

    def reader():
        try:
            while not stop.is_set():
                seen.append(model.encode(xb)[0].clone())
                fastvae.elbo(model, xb)
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        model.fit(x, epochs=6, batch_size=32, seed=0, progress=False, callback=on_epoch)
    finally:
        stop.set()
        t.join()
    assert not errors
    assert len(seen) > 0 and len(snapshots) == 7
    assert all(any(torch.equal(s, snap) for snap in snapshots) for s in seen)


X16 = torch.randint(0, 256, (20, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def tiny16():
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=16, latent_dim=2, encoder_hidden=(4,), decoder_hidden=(4,))


def test_batch_larger_than_the_data_is_one_batch():
    model = tiny16()
    hist = model.fit(X16, epochs=3, batch_size=10**9, seed=0, progress=False)  # no 3 TB buffers: one batch of 20
    assert hist.update_rec.shape == (3,) and model.optimizer_state_.step == 3
    ref = tiny16()
    ref.fit(X16, epochs=3, batch_size=20, seed=0, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), ref.parameters()))
