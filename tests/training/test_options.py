"""The training options: one typed object (fastvae.TrainOptions) whose fields are the C++ trainer's option table
(each side fails loudly on a name the other lacks), validated and round-tripped, and fit's options object and
keyword overrides alike. Their errors: tests/training/test_fit_errors.py."""
import dataclasses

import pytest
import torch

import fastvae
from fastvae import _C, TrainOptions
from fastvae.options import names as option_names


def tiny(**kw):
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=6, latent_dim=2, encoder_hidden=(5,), decoder_hidden=(4,), **kw)


def test_train_options_fields_are_the_cpp_table_and_the_drivers():
    from fastvae.options import DRIVER_OPTIONS
    assert [n for n in option_names() if n not in DRIVER_OPTIONS] == list(_C.TRAIN_OPTIONS)
    assert set(DRIVER_OPTIONS) <= set(option_names())


def train_vae_call(options):
    """Runs one epoch of the C++ trainer directly with a tiny model and the given options dict."""
    model = tiny()
    ps = model.flat_parameters()
    state = fastvae.AdamState.zeros(ps)
    x = torch.randint(0, 256, (8, 6), dtype=torch.uint8)
    with torch.no_grad():
        trainer = _C.MlpTrainer(ps, state.exp_avg, state.exp_avg_sq, [True] * len(ps), model.spec().as_dict(), options)
        return trainer.epoch(x, None, torch.arange(8), torch.Generator().manual_seed(0), 0, None)


def test_cpp_loop_reads_every_option_by_name():
    out = train_vae_call(TrainOptions(batch_size=4).engine_dict())
    assert out["updates"] == 2 and out["error"] is None


@pytest.mark.parametrize("name", _C.TRAIN_OPTIONS)
def test_an_option_missing_on_the_cpp_side_fails_loudly(name):
    d = TrainOptions().engine_dict()
    del d[name]
    with pytest.raises(RuntimeError, match=f"training option '{name}' is missing"):
        train_vae_call(d)


def test_an_option_unknown_to_cpp_fails_loudly():
    d = dict(TrainOptions().engine_dict(), momentum=0.5)  # not an option (temperature became one)
    with pytest.raises(RuntimeError, match="no training option 'momentum'"):
        train_vae_call(d)
    d = dict(TrainOptions().engine_dict(), estimator="iwae")
    with pytest.raises(RuntimeError, match="unknown estimator 'iwae'"):
        train_vae_call(d)
    d = dict(TrainOptions().engine_dict(), betas="ab")
    with pytest.raises(RuntimeError, match="'betas' has the wrong type"):
        train_vae_call(d)


def test_train_options_validate_and_round_trip():
    opts = TrainOptions(epochs=3, betas=[0.8, 0.99], estimator="stl", kl_weight=2)
    checked = opts.validate()
    assert checked.betas == (0.8, 0.99) and isinstance(checked.kl_weight, float)
    assert TrainOptions.from_dict(checked.to_dict()) == checked
    with pytest.raises(ValueError, match=r"unknown training options \['epoch'\]"):
        TrainOptions.from_dict({"epoch": 2})
    with pytest.raises(TypeError, match="TrainOptions: epochs must be an integer, got 1.5"):
        TrainOptions(epochs=1.5).validate()
    with pytest.raises(ValueError, match="TrainOptions: estimator must be one of"):
        TrainOptions(estimator="iwae").validate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.epochs = 2


def test_fit_takes_options_and_keyword_overrides_alike():
    x = torch.randint(0, 256, (10, 6), dtype=torch.uint8)
    a, b, c = tiny(), tiny(), tiny()
    a.fit(x, epochs=2, batch_size=4, lr=3e-3, seed=0, progress=False)
    b.fit(x, options=TrainOptions(epochs=2, batch_size=4, lr=3e-3), seed=0, progress=False)
    c.fit(x, TrainOptions(epochs=2, batch_size=4, lr=1.0), lr=3e-3, seed=0, progress=False)
    for m in (b, c):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), m.parameters()))
        assert m.train_options_ == a.train_options_ == TrainOptions(epochs=2, batch_size=4, lr=3e-3).validate()
