"""Training state stays whole under faults (issue 20): divergence that rolls back to the last good update, frozen
parameters, and threads (one owner per model, readers and save at update boundaries). Each row asserts the
exception and a message fragment, or the exact state afterwards. Interrupts: test_faults_interrupts.py."""
import re
import threading

import numpy as np
import pytest
import torch
from torch import nn

import fastvae

D, Z = 16, 2
X = torch.randint(0, 256, (40, D), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
KW = dict(epochs=2, batch_size=10, seed=1, progress=False)


def mlp(**kw):
    torch.manual_seed(0)
    return fastvae.VAE(D, Z, (8,), (8,), **kw)


def networks(**kw):
    torch.manual_seed(0)
    return fastvae.VAE.from_networks(nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 2 * Z)),
                                     nn.Sequential(nn.Linear(Z, 8), nn.Tanh(), nn.Linear(8, D)), Z, **kw)


KINDS = {"mlp": mlp, "networks": networks}


def dead_unit(model):
    """A decoder hidden unit with no input and no output weights: its parameters get zero gradients forever."""
    with torch.no_grad():
        first, last = (model.decoder[0], model.decoder[1]) if isinstance(model.decoder, nn.ModuleList) else \
            (model.decoder[0], model.decoder[2])
        first.weight[3].zero_()
        first.bias[3] = 0.0
        last.weight[:, 3].zero_()
    return model


def state(model):
    return ([p.detach().clone() for p in model.parameters()], model.generator_state_,
            None if model.optimizer_state_ is None else model.optimizer_state_.step)


def equal_state(a, b):
    pa, ga, sa = a
    pb, gb, sb = b
    return all(torch.equal(x, y) for x, y in zip(pa, pb)) and sa == sb and (
        ga is None and gb is None or torch.equal(ga, gb))


def stopped_run(make, updates, **kw):
    """The same run stopped by a callback after ``updates`` updates: the state a divergence must leave."""
    model = make()

    class Stop(Exception):
        pass

    def cb(event, info):
        if event == "step" and info["update"] == updates:
            raise Stop

    if updates == 0:
        return model
    with pytest.raises(Stop):
        model.fit(X, callback=cb, callback_every=1, **dict(KW, **kw))
    return model


# -- divergence: refused up front, or rolled back to the last update whose loss and parameters were finite -----
DIVERGENCE = [
    # (kind, fit options, model change, exception, message fragment)
    ("mlp", dict(lr=1e308), None, ValueError, "lr=1e+308 is inf in the model's arithmetic"),
    ("mlp", dict(weight_decay=1e308), None, ValueError, "weight_decay=1e+308 is inf"),
    ("mlp", dict(eps=1e-50), None, ValueError, "eps=1e-50 is 0 in the model's arithmetic"),
    ("mlp", dict(kl_weight=1e39), None, ValueError, "kl_weight=1e+39 is inf"),
    ("mlp", dict(lr=1e38), None, fastvae.TrainingDivergedError, "non-finite parameters or Adam moments"),
    ("mlp", dict(weight_decay=1e38), None, fastvae.TrainingDivergedError, "non-finite parameters or Adam moments"),
    ("mlp", dict(eps=0.0), dead_unit, fastvae.TrainingDivergedError, "eps=0 with a zero second moment"),
    ("mlp", dict(lr=1e20), None, fastvae.TrainingDivergedError, "non-finite loss at update 2"),
    ("mlp", dict(lr=1e10, batch_size=7), None, fastvae.TrainingDivergedError, "non-finite loss at update 2"),
    ("networks", dict(lr=1e308), None, ValueError, "lr=1e+308 is inf"),
    ("networks", dict(lr=1e38), None, fastvae.TrainingDivergedError, "non-finite"),
    ("networks", dict(eps=0.0), dead_unit, fastvae.TrainingDivergedError, "non-finite parameters"),
    # the networks' posterior scale overflows at update 2 (the heads refuse it): divergence at update 2
    ("networks", dict(lr=1e20), None, fastvae.TrainingDivergedError, "non-finite loss at update 2"),
]


@pytest.mark.parametrize("kind, options, change, error, fragment", DIVERGENCE)
def test_divergence_leaves_the_last_good_update(kind, options, change, error, fragment):
    make = (lambda: change(KINDS[kind]())) if change else KINDS[kind]
    model = make()
    with pytest.raises(error, match=re.escape(fragment)):
        model.fit(X, **dict(KW, **options))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    good = 0 if model.optimizer_state_ is None else model.optimizer_state_.step
    if model.history_ is not None:
        assert len(model.history_.update_rec) == good
    stopped = stopped_run(make, good, **options)
    if good:
        assert equal_state(state(model), state(stopped))
    else:  # no update was good: the model is as it was built
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), stopped.parameters()))
    # the next fit takes the model as it is (it is finite): it trains, or diverges again from huge weights
    try:
        model.fit(X, epochs=1, batch_size=10, progress=False)
    except (fastvae.TrainingDivergedError, ValueError) as e:
        assert "already diverged" not in str(e)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_parameters_stay_put(kind):
    model = KINDS[kind]()
    model.decoder.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.fit(X, weight_decay=0.1, **KW)  # weight decay would move them if they were updated
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]) == name.startswith("decoder"), name
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen|no trainable parameters"):
        model.fit(X, **KW)


# -- threads: one owner, boundaries ------------------------------------------------------------------------
def fit_in_thread(model, **kw):
    out = {}

    def run():
        try:
            out["history"] = model.fit(X, **dict(KW, **kw))
        except BaseException as e:  # noqa: BLE001 (the test inspects it)
            out["error"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, out


@pytest.mark.parametrize("kind", KINDS)
def test_a_second_fit_on_a_fitting_model_is_refused(kind):
    model = KINDS[kind]()
    started, release = threading.Event(), threading.Event()

    def cb(event, info):
        if event == "step" and info["update"] == 2:
            started.set()
            release.wait(30)
    t, out = fit_in_thread(model, callback=cb, callback_every=1)
    assert started.wait(30)
    with pytest.raises(RuntimeError, match="already being fitted in another thread"):
        model.fit(X, **KW)
    release.set()
    t.join(60)
    assert "error" not in out
    solo = KINDS[kind]()
    solo.fit(X, **KW)
    assert equal_state(state(model), state(solo))  # the refused call changed nothing


@pytest.mark.parametrize("kind, event", [("mlp", "step"), ("mlp", "epoch"), ("networks", "step"),
                                         ("networks", "epoch")])
def test_fit_from_its_own_callback_is_refused(kind, event):
    model = KINDS[kind]()
    seen = []

    def cb(ev, info):
        if ev == event and not seen:
            try:
                model.fit(X, epochs=1, progress=False)
            except RuntimeError as e:
                seen.append(str(e))
    model.fit(X, callback=cb, callback_every=1, **KW)
    assert seen and "fit was called from inside a fit callback" in seen[0]
    assert model.optimizer_state_.step == len(model.history_.update_rec) == 8


@pytest.mark.parametrize("kind", KINDS)
def test_save_from_a_step_callback_is_refused_and_from_an_epoch_callback_is_whole(kind, tmp_path):
    model = KINDS[kind]()
    errors = []

    def cb(event, info):
        if event == "step" and info["update"] == 3:
            try:
                model.save(tmp_path / "mid.pt")
            except RuntimeError as e:
                errors.append(str(e))
        if event == "epoch" and info["epoch"] == 0:
            model.save(tmp_path / "epoch.pt")
    model.fit(X, callback=cb, callback_every=1, **KW)
    assert errors and "between two update boundaries" in errors[0] and not (tmp_path / "mid.pt").exists()
    raw = torch.load(tmp_path / "epoch.pt", weights_only=True)
    assert raw["optimizer"]["step"] == len(raw["history"]["update_rec"]) == 4 and raw["epoch_state"] is None


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_read_from_another_thread_see_one_boundary(kind, tmp_path):
    model = KINDS[kind]()
    boundaries, reads = [], []
    done = threading.Event()

    def cb(event, info):  # the model at each epoch boundary
        if event == "epoch":
            boundaries.append([p.detach().clone() for p in model.parameters()])

    def reader():
        k = 0
        while not done.is_set():
            path = tmp_path / f"r{k % 2}.pt"
            model.save(path)
            raw = torch.load(path, weights_only=True)
            steps = raw["optimizer"]["step"] if raw["optimizer"] else 0
            updates = len(raw["history"]["update_rec"]) if raw["history"] else 0
            reads.append((steps, updates, [t.clone() for t in raw["state_dict"].values()]))
            k += 1
    t = threading.Thread(target=reader)
    t.start()
    try:
        model.fit(X, callback=cb, epochs=4, batch_size=10, seed=1, progress=False)
    finally:
        done.set()
        t.join(60)
    start = [p.detach().clone() for p in KINDS[kind]().parameters()]
    assert reads
    for steps, updates, weights in reads:
        assert steps == updates and steps % 4 == 0  # an epoch boundary: 4 updates per epoch
        candidates = [start] + boundaries
        assert any(all(torch.equal(a, b) for a, b in zip(weights, c)) for c in candidates)


def test_two_models_fit_in_two_threads_as_they_would_alone():
    a, b = mlp(), networks()
    ta, oa = fit_in_thread(a)
    tb, ob = fit_in_thread(b)
    ta.join(60)
    tb.join(60)
    assert "error" not in oa and "error" not in ob
    sa, sb = mlp(), networks()
    sa.fit(X, **KW)
    sb.fit(X, **KW)
    assert equal_state(state(a), state(sa)) and equal_state(state(b), state(sb))
    np.testing.assert_array_equal(a.history_.update_rec, sa.history_.update_rec)
