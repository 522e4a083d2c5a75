"""Training state and checkpoints: VAE.save / VAE.load and fit(checkpoint=...) continue a run bit-exactly."""
import numpy as np
import pytest
import torch

import fastvae
from fastvae.checkpoint import CheckpointError
from fastvae.datasets import load_mnist

SETTINGS = dict(batch_size=64, n_samples=1, lr=1e-3, threshold=127)


@pytest.fixture(scope="module")
def data(mnist_dir):
    x, y = load_mnist("train", root=mnist_dir)
    return x[:600].reshape(600, -1), y[:600], x[600:700].reshape(100, -1)


def fresh(name="stats305c"):
    torch.manual_seed(0)
    return fastvae.VAE.from_preset(name)


def max_diff(a, b):
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def same_state(a, b):
    assert max_diff(a, b) == 0.0
    sa, sb = a.optimizer_state_, b.optimizer_state_
    assert sa.step == sb.step
    for m, n in zip(sa.exp_avg + sa.exp_avg_sq, sb.exp_avg + sb.exp_avg_sq):
        assert torch.equal(m, n)
    assert torch.equal(a.generator_state_, b.generator_state_)
    for k in a.history_.__dict__:
        # measurements of the machine, not state: the epochs' times, and the thread counts the chooser picked by
        # timing (training/threads.h), which follow the load; the parameters do not depend on them
        if k not in ("epoch_seconds", "epoch_threads"):
            np.testing.assert_array_equal(getattr(a.history_, k), getattr(b.history_, k), err_msg=k)


def test_three_ways_of_training_two_epochs_agree_bit_exactly(data, tmp_path):
    x, _, xt = data
    kw = dict(SETTINGS, test_images=xt, progress=False)  # the test evaluation draws from the same generator
    one = fresh()
    one.fit(x, epochs=2, seed=0, **kw)
    saved = fresh()
    saved.fit(x, epochs=1, seed=0, **kw)
    saved.save(tmp_path / "ck.pt")
    resumed = fastvae.VAE.load(tmp_path / "ck.pt")
    resumed.fit(x, epochs=1, **kw)
    twice = fresh()
    twice.fit(x, epochs=1, seed=0, **kw)
    twice.fit(x, epochs=1, **kw)
    same_state(one, resumed)
    same_state(one, twice)
    assert resumed.optimizer_state_.step == 2 * 10


def test_resume_keeps_the_validation_schedule(data):
    x, _, xv = data
    small, sv = (fastvae.datasets.subsample(t.reshape(-1, 28, 28)).reshape(len(t), -1) for t in (x, xv))
    kw = dict(batch_size=100, n_samples=2, threshold=128, val_images=sv, eval_every=4, progress=False)
    one = fresh("ese546")
    one.fit(small, epochs=2, seed=1, **kw)
    two = fresh("ese546")
    two.fit(small, epochs=1, seed=1, **kw)
    two.fit(small, epochs=1, **kw)
    same_state(one, two)
    assert list(one.history_.val_update) == [0, 4, 8, 12]


def test_seed_reseeds_and_no_seed_continues(data):
    x, _, _ = data
    a, b = fresh(), fresh()
    a.fit(x, epochs=1, seed=3, progress=False)
    b.fit(x, epochs=1, seed=3, progress=False)
    assert torch.equal(a.generator_state_, b.generator_state_)
    a.fit(x, epochs=1, progress=False)
    b.fit(x, epochs=1, seed=3, progress=False)  # the same permutation and noise as b's first epoch
    assert max_diff(a, b) > 0


def test_checkpoint_every_n_epochs_and_at_the_end(data, tmp_path):
    x, _, _ = data
    path = tmp_path / "run.pt"
    seen = {}

    def cb(event, info):
        if event == "epoch":
            seen[info["epoch"]] = fastvae.VAE.load(path).optimizer_state_.step if path.exists() else None

    m = fresh()
    m.fit(x, epochs=3, seed=0, checkpoint=path, checkpoint_every=2, callback=cb, progress=False, **SETTINGS)
    assert seen == {0: None, 1: 20, 2: 30}  # after epoch 2, then after the last one
    same_state(m, fastvae.VAE.load(path))


def test_interrupt_keeps_the_last_checkpoint_and_resume_matches(data, tmp_path):
    x, _, _ = data
    path = tmp_path / "run.pt"

    def stop_in_epoch_two(event, info):
        if event == "step" and info["update"] == 15:
            raise KeyboardInterrupt

    m = fresh()
    with pytest.raises(KeyboardInterrupt):
        m.fit(x, epochs=3, seed=0, checkpoint=path, callback=stop_in_epoch_two, callback_every=1, progress=False,
              **SETTINGS)
    assert m.optimizer_state_.step == 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]  # no temp file left
    last = fastvae.VAE.load(path)
    assert last.optimizer_state_.step == 10 and len(last.history_.update_rec) == 10
    last.fit(x, epochs=2, progress=False, **SETTINGS)
    straight = fresh()
    straight.fit(x, epochs=3, seed=0, progress=False, **SETTINGS)
    same_state(straight, last)


def test_save_load_round_trip(data, tmp_path):
    x, y, _ = data
    m = fresh("cvae_hw7")
    m.fit(x[:100], train_labels=y[:100], epochs=1, seed=0, progress=False, kl_weight=2.0)
    m.save(tmp_path / "c.pt")
    back = fastvae.VAE.load(str(tmp_path / "c.pt"))
    assert back.spec() == m.spec() and back.preset == "cvae_hw7" and back.train_options_.kl_weight == 2.0
    same_state(m, back)
    mu, sigma = m.encode(x[:5].float().gt(127).float(), y[:5])
    mu2, sigma2 = back.encode(x[:5].float().gt(127).float(), y[:5])
    assert torch.equal(mu, mu2) and torch.equal(sigma, sigma2)
    # A model never fitted and a float64 model save and load too.
    f64 = fastvae.VAE(data_dim=7, latent_dim=2, encoder_hidden=(3,), decoder_hidden=(4,), dtype=torch.float64)
    f64.save(tmp_path / "f64.pt")
    back = fastvae.VAE.load(tmp_path / "f64.pt")
    assert back.encoder_head.weight.dtype == torch.float64 and back.optimizer_state_ is None
    assert max_diff(f64, back) == 0.0


def test_state_dict_stays_plain_weights(data, tmp_path):
    x, _, _ = data
    m = fresh()
    m.fit(x[:64], epochs=1, seed=0, progress=False)
    sd = m.state_dict()
    assert set(sd) == {n for n, _ in m.named_parameters()}
    torch.save(sd, tmp_path / "w.pt")
    other = fastvae.VAE.from_preset("stats305c")
    other.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    assert max_diff(m, other) == 0.0


def test_load_rejects_bad_files(data, tmp_path):
    x, _, _ = data
    good = tmp_path / "good.pt"
    m = fresh()
    m.fit(x[:64], epochs=1, seed=0, progress=False)
    m.save(good)
    blob = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "noise.pt").write_bytes(b"not a checkpoint at all")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(m.state_dict(), tmp_path / "weights.pt")
    torch.save({"format": "fastvae.checkpoint", "format_version": 99}, tmp_path / "future.pt")
    torch.save({"format": "fastvae.checkpoint", "format_version": 1, "config": {}}, tmp_path / "broken.pt")
    for name, fragment in [("truncated.pt", "corrupt or truncated"), ("noise.pt", "corrupt or truncated"),
                           ("empty.pt", "corrupt or truncated"), ("weights.pt", "not a fastvae checkpoint"),
                           ("future.pt", "format 99"), ("broken.pt", "invalid checkpoint")]:
        with pytest.raises(CheckpointError, match=fragment) as e:
            fastvae.VAE.load(tmp_path / name)
        assert name in str(e.value)
        assert isinstance(e.value, ValueError)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        fastvae.VAE.load(tmp_path / "missing.pt")


TIMING = {"wall_seconds", "total_seconds", "epoch_seconds", "seconds"}


def _untimed(v):
    return {k: _untimed(x) for k, x in v.items() if k not in TIMING} if isinstance(v, dict) else v


def _metrics(folder):
    import json
    return _untimed(json.loads((folder / "metrics.json").read_text()))


@pytest.mark.parametrize("name", ["stats305c", "cvae_hw7"])
def test_cli_resume_equals_an_uninterrupted_run(name, mnist_dir, tmp_path):
    from fastvae import cli

    def run(out, epochs, *extra):
        return cli.main(["reproduce", name, "--out", str(out), "--data", str(mnist_dir), "--epochs", str(epochs),
                         "--limit", "200", "--no-progress", "--seed", "2", *extra])

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run(straight, 2) == 0
    assert run(resumed, 1) == 0  # stands for a run stopped after its first epoch
    assert fastvae.VAE.load(resumed / "checkpoint.pt").optimizer_state_.step == 4
    assert run(resumed, 2, "--resume") == 0
    a, b = _metrics(straight), _metrics(resumed)
    assert a == b
    for fig in a["figures"]:
        assert (straight / fig).read_bytes() == (resumed / fig).read_bytes(), fig
    same_state(fastvae.VAE.load(straight / "checkpoint.pt"), fastvae.VAE.load(resumed / "checkpoint.pt"))
    # A checkpoint from another run (here: another seed) is refused, exit code 1.
    assert run(resumed, 2, "--resume", "--seed", "3") == 1


def tiny(**kw):
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=6, latent_dim=2, encoder_hidden=(5,), decoder_hidden=(4,), **kw)


def test_train_options_round_trip_through_a_checkpoint(tmp_path):
    x = torch.randint(0, 256, (10, 6), dtype=torch.uint8)
    model = tiny()
    opts = fastvae.TrainOptions(epochs=1, batch_size=5, betas=(0.8, 0.99), eps=1e-7, estimator="stl", kl_weight=2.5,
                        callback_every=3)
    model.fit(x, options=opts, seed=0, progress=False)
    back = fastvae.VAE.load(model.save(tmp_path / "m.pt"))
    assert back.train_options_ == model.train_options_ == opts.validate()
    assert back.spec() == model.spec()


def gaussian_images(n=96, D=16, seed=0):
    return torch.randint(0, 256, (n, D), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def gaussian_model(scale):
    torch.manual_seed(1)
    return fastvae.VAE(data_dim=16, latent_dim=3, encoder_hidden=(8,), decoder_hidden=(8,), likelihood="gaussian",
                       gaussian_sigma=0.5, gaussian_scale=scale, activation="tanh")


GAUSSIAN_FIT = dict(batch_size=32, n_samples=2, lr=1e-2, betas=(0.9, 0.99), eps=1e-3, pixels="intensity")


def test_checkpoint_round_trip_keeps_the_learned_scale(tmp_path):
    xs = gaussian_images()
    a = gaussian_model("learned")
    a.fit(xs, epochs=1, seed=2, progress=False, **GAUSSIAN_FIT)
    a.save(tmp_path / "m.pt")
    b = fastvae.VAE.load(tmp_path / "m.pt")
    assert b.gaussian_scale == "learned" and torch.equal(a.log_sigma, b.log_sigma)
    assert all(torch.equal(m, n) for m, n in zip(a.optimizer_state_.exp_avg_sq, b.optimizer_state_.exp_avg_sq))
    a.fit(xs, epochs=1, progress=False)
    b.fit(xs, epochs=1, progress=False)
    for p, q in zip(a.flat_parameters(), b.flat_parameters()):
        assert torch.equal(p, q)  # the resumed run is the same run
    c = gaussian_model("predicted")
    c.save(tmp_path / "p.pt")
    d = fastvae.VAE.load(tmp_path / "p.pt")
    assert d.gaussian_scale == "predicted" and d.decoder[-1].weight.shape == (32, 8)
