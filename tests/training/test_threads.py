"""TrainOptions.threads and the thread chooser of the C++ trainer (cpp/training/threads.h): the results of a
fit do not depend on how many threads run its updates (so the chooser may change the count mid-run; the
products' blocks follow the configured count, cpu/split_threads.h), the count is recorded in
History.epoch_threads, and the caller's torch thread count is left as it was."""
import threading

import pytest
import torch
from torch import nn

import fastvae

X = torch.randint(0, 256, (300, 784), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

# Layers wide enough that every product is split over the threads (cpp/cpu/vae_engine.cpp, col_block).
CONFIGS = {
    "iwae-paper-batch-20": (dict(activation="tanh"), dict(pixels="dynamic", batch_size=20)),
    "elbo": (dict(), dict()),
    "iwae-dreg": (dict(), dict(objective="iwae", k=5, iwae_estimator="dreg", pixels="dynamic")),
    "categorical": (dict(latent="categorical", categories=10, latent_dim=20), dict(temperature=1.0, hard=True)),
    "gaussian-learned": (dict(likelihood="gaussian", gaussian_scale="learned"), dict(pixels="intensity")),
    "stl-2-samples": (dict(), dict(estimator="stl", n_samples=2)),
}


def run(config, threads, pin=None):
    """A model of `config` fitted with TrainOptions.threads=threads; pin: the updates run at that many threads
    instead (the trainer's private hook), the products still split for `threads`."""
    arch, opts = CONFIGS[config]
    arch = dict(dict(data_dim=784, latent_dim=50, encoder_hidden=(200, 200), decoder_hidden=(200, 200)), **arch)
    opts = dict(dict(batch_size=100), **opts)
    torch.manual_seed(0)
    model = fastvae.VAE(**arch)
    if pin is not None:
        make = model._stepper

        def pinned(*args, **kwargs):
            stepper = make(*args, **kwargs)
            stepper._trainer._pin_threads(pin)
            return stepper
        model._stepper = pinned
    model.fit(X, epochs=2, seed=3, progress=False, threads=threads, test_images=X[:100], **opts)
    return model


@pytest.mark.parametrize("config", CONFIGS)
def test_one_thread_gives_the_bits_of_two(config):
    one, two = run(config, 2, pin=1), run(config, 2)
    for a, b in zip(one.parameters(), two.parameters()):
        assert torch.equal(a, b)
    for name in ("update_rec", "update_kl", "train_elbo", "test_elbo"):
        assert (getattr(one.history_, name) == getattr(two.history_, name)).all(), name
    assert one.history_.epoch_threads.tolist() == [1, 1] and two.history_.epoch_threads.tolist() == [2, 2]


def test_the_chosen_count_is_recorded_and_the_callers_count_kept():
    before = torch.get_num_threads()
    model = run("elbo", None)
    assert torch.get_num_threads() == before
    assert set(model.history_.epoch_threads.tolist()) <= {1, max(before, 1)}
    seen = []
    model.fit(X, epochs=1, batch_size=100, progress=False, threads=2,
              callback=lambda event, info: seen.append((event, info.get("threads"), torch.get_num_threads())))
    # callbacks run with the caller's count; the epoch's info says which count the updates used
    assert ("epoch", 2, before) in seen and all(n == before for _, _, n in seen)


def test_a_count_set_with_torch_set_num_threads_is_kept():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        model = run("elbo", None)
        assert model.history_.epoch_threads.tolist() == [1, 1]
    finally:
        torch.set_num_threads(before)


def test_another_threads_count_is_untouched_while_a_fit_runs():
    counts, done = [], threading.Event()

    def watch():
        while not done.is_set():
            counts.append(torch.get_num_threads())
            done.wait(0.001)

    before = torch.get_num_threads()
    t = threading.Thread(target=watch)
    t.start()
    try:
        run("elbo", 1 if before > 1 else 2)
    finally:
        done.set()
        t.join()
    # the watcher's count is its own (OpenMP's per-thread setting), whatever the fit's thread uses
    assert len(set(counts)) == 1


@pytest.mark.parametrize("bad, error, match", [
    (0, ValueError, "threads must be an integer >= 1"),
    (-2, ValueError, "threads must be an integer >= 1"),
    (1.5, TypeError, "threads must be an integer"),
    (True, TypeError, "threads must be an integer"),
    ("2", TypeError, "threads must be an integer"),
])
def test_threads_must_be_a_positive_integer_or_none(bad, error, match):
    with pytest.raises(error, match=f"fastvae.fit: {match}"):
        fastvae.VAE(6, 2, (4,), (4,)).fit(X[:10, :6], threads=bad, progress=False)


def test_networks_take_torchs_own_count():
    torch.manual_seed(0)
    model = fastvae.VAE.from_networks(nn.Sequential(nn.Linear(6, 4)), nn.Sequential(nn.Linear(2, 6)), 2)
    with pytest.raises(ValueError, match="threads do not apply to a model with custom networks"):
        model.fit(X[:10, :6], threads=1, progress=False)
    model.fit(X[:10, :6], epochs=1, progress=False)
    assert model.history_.epoch_threads.tolist() == [torch.get_num_threads()]


def test_histories_from_files_before_epoch_threads_load_with_zeros():
    from pathlib import Path
    fixture = Path(__file__).parents[1] / "checkpoint" / "fixtures" / "checkpoints" / "v2_vae.pt"
    history = fastvae.VAE.load(fixture).history_
    assert len(history.train_elbo) > 0
    assert history.epoch_threads.tolist() == [0] * len(history.train_elbo)
