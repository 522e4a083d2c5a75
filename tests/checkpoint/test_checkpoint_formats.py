"""Every checkpoint format an earlier release wrote still loads: stored fixtures of format 1, format 2 and the
unversioned "fastvae-network-vae-1" of models with custom networks (tests/checkpoint/fixtures/checkpoints, written by those
releases with make_fixtures.py), each compared with what that release computed from the saved model."""
import dataclasses
import json
import pathlib
import sys

import numpy as np
import pytest
import torch

import fastvae
from fastvae.checkpoint import FORMAT_VERSION

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "checkpoints"
sys.path.insert(0, str(FIXTURES))
import make_fixtures  # noqa: E402  (the fixtures' data and networks)

FILES = {"v1_vae": "mlp", "v2_vae": "mlp", "network_v1": "networks"}


def load(stem):
    path = FIXTURES / f"{stem}.pt"
    if FILES[stem] == "mlp":
        return fastvae.VAE.load(path)
    return fastvae.NetworkVAE.load(path, *make_fixtures.networks())


def objective(model, stem):
    _, x, eps = make_fixtures.data()
    return model.elbo(x, eps.shape[0], eps=eps)


@pytest.mark.parametrize("stem", sorted(FILES))
def test_a_file_of_an_earlier_release_loads_the_model_it_saved(stem):
    facts = json.loads((FIXTURES / f"{stem}.json").read_text())
    raw = torch.load(FIXTURES / f"{stem}.pt", weights_only=True)
    model = load(stem)
    for name, t in raw["state_dict"].items():  # the weights as stored
        assert torch.equal(model.state_dict()[name], t), name
    out = objective(model, stem)
    for term in ("elbo", "rec", "kl"):  # what the release computed from the same model, data and noise
        torch.testing.assert_close(getattr(out, term), torch.tensor(facts[term]), rtol=0, atol=2e-5)
    assert len(model.history_.update_rec) == model.optimizer_state_.step == facts["updates"]
    assert len(model.history_.train_elbo) == facts["epochs"]
    assert model.generator_state_ is not None


@pytest.mark.parametrize("stem", sorted(FILES))
def test_a_loaded_file_trains_on_and_saves_in_todays_format(stem, tmp_path):
    model = load(stem)
    images, _, _ = make_fixtures.data()
    step = model.optimizer_state_.step
    model.fit(images, epochs=1, batch_size=16, progress=False)
    assert model.optimizer_state_.step == step + 3
    model.save(tmp_path / "now.pt")
    raw = torch.load(tmp_path / "now.pt", weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION and raw["kind"] == FILES[stem]
    again = (fastvae.VAE.load(tmp_path / "now.pt") if FILES[stem] == "mlp"
             else fastvae.NetworkVAE.load(tmp_path / "now.pt", *make_fixtures.networks()))
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(model.history_.update_rec, again.history_.update_rec)


def test_a_checkpoint_of_one_kind_is_refused_by_the_other():
    with pytest.raises(fastvae.CheckpointError, match="kind 'networks'.*NetworkVAE.load"):
        fastvae.VAE.load(FIXTURES / "network_v1.pt")
    with pytest.raises(fastvae.CheckpointError, match="kind 'mlp'.*fastvae.VAE.load"):
        fastvae.NetworkVAE.load(FIXTURES / "v2_vae.pt", *make_fixtures.networks())


def tiny(**kw):
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=6, latent_dim=2, encoder_hidden=(5,), decoder_hidden=(4,), **kw)


def test_a_format_1_checkpoint_still_loads(tmp_path):
    x = torch.randint(0, 256, (10, 6), dtype=torch.uint8)
    model = tiny()
    model.fit(x, epochs=1, batch_size=5, kl_weight=2.0, seed=0, progress=False)
    data = torch.load(model.save(tmp_path / "m.pt"), weights_only=True)
    old = {k: v for k, v in model.train_options_.to_dict().items() if k not in ("epochs", "callback_every")}
    del data["train_options"]
    data.update(format_version=1, fit_settings=old)
    torch.save(data, tmp_path / "v1.pt")
    back = fastvae.VAE.load(tmp_path / "v1.pt")
    assert back.train_options_ == dataclasses.replace(model.train_options_, epochs=1, callback_every=20)
    assert back.train_options_.kl_weight == 2.0
