"""One description of the architecture and of the training options, read by Python and C++ alike:
the enum names come from the C++ tables, ArchSpec's fields are the schemas' architecture arguments,
TrainOptions' fields are the C++ loop's option table, and each side rejects what the other lacks."""
import dataclasses

import pytest
import torch

import fastvae
from fastvae import _C, TrainOptions
from fastvae.arch import names as arch_names
from fastvae.options import names as option_names

ops = torch.ops.fastvae
F64 = torch.float64
VAE_OPS = ["vae_elbo", "vae_elbo_backward", "vae_encode", "vae_decode", "vae_iwae"]


def tiny(**kw):
    torch.manual_seed(0)
    return fastvae.VAE(data_dim=6, latent_dim=2, encoder_hidden=(5,), decoder_hidden=(4,), **kw)


def batch(model, dtype=F64):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(3, model.data_dim, generator=g) < 0.5).to(dtype)
    eps = torch.randn(2, 3, model.latent_dim, generator=g, dtype=dtype)
    return x, eps, [p.detach() for p in model.flat_parameters()]


@pytest.mark.parametrize("op", VAE_OPS)
def test_archspec_fields_are_the_schema_arguments_in_order(op):
    args = [a.name for a in getattr(ops, op).default._schema.arguments]
    start = args.index("params") + 1
    assert tuple(args[start:start + len(arch_names())]) == arch_names()
    assert args[start + len(arch_names()):] == (["estimator"] if op.startswith("vae_elbo") else [])


@pytest.mark.parametrize("field", ["activation", "mean_activation", "scale_activation"])
@pytest.mark.parametrize("name", _C.ACTIVATIONS)
def test_every_activation_name_is_accepted_by_python_and_cpp(field, name):
    kw = {field: name}
    if field == "scale_activation" and name != "sigmoid":
        kw["posterior"] = "logvar"
    model = tiny(dtype=F64, **kw)  # Python's check reads the same table
    x, eps, ps = batch(model)
    mu, sigma = ops.vae_encode(x, None, ps, *model.spec().as_args())
    assert mu.shape == (3, 2) and torch.isfinite(sigma).all()
    assert getattr(model.spec(), field) == name


@pytest.mark.parametrize("name", _C.POSTERIORS)
def test_every_posterior_name_is_accepted_by_python_and_cpp(name):
    model = tiny(dtype=F64, posterior=name, scale_activation="sigmoid")
    x, eps, ps = batch(model)
    out = ops.vae_elbo(x, None, eps, ps, *model.spec().as_args(), "analytic")
    assert all(torch.isfinite(t).all() for t in out)


@pytest.mark.parametrize("name", _C.ESTIMATORS)
def test_every_estimator_name_is_accepted_by_python_and_cpp(name):
    model = tiny(dtype=F64)
    x, eps, _ = batch(model)
    e = fastvae.elbo(model, x, eps=eps, estimator=name)
    e.elbo.sum().backward()  # vae_elbo_backward with the same name
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("field,table", [("activation", "ACTIVATIONS"), ("mean_activation", "ACTIVATIONS"),
                                         ("posterior", "POSTERIORS")])
def test_a_name_outside_the_table_is_rejected_by_both_sides(field, table):
    with pytest.raises(ValueError, match=f"{field} must be one of"):
        tiny(**{field: "softplus"})
    model = tiny(dtype=F64)
    x, eps, ps = batch(model)
    args = dataclasses.replace(model.spec(), **{field: "softplus"}).as_args()
    with pytest.raises(RuntimeError, match=f"unknown {field} 'softplus'; choose one of") as info:
        ops.vae_encode(x, None, ps, *args)
    assert all(repr(n) in str(info.value) for n in getattr(_C, table))
    with pytest.raises(RuntimeError, match="unknown estimator 'elbo'"):
        ops.vae_elbo(x, None, eps, ps, *model.spec().as_args(), "elbo")


def test_fake_kernels_read_the_spec_by_name():
    model = tiny(dtype=F64, cond_dim=0)
    x, eps, ps = batch(model)
    meta = [p.to("meta") for p in ps]
    mu, _ = ops.vae_encode(x.to("meta"), None, meta, *model.spec().as_args())
    logits = ops.vae_decode(eps[0].to("meta"), None, meta, *model.spec().as_args())
    assert mu.shape == (3, model.latent_dim) and logits.shape == (3, model.data_dim)


def test_train_options_fields_are_the_cpp_table():
    assert option_names() == tuple(_C.TRAIN_OPTIONS)


def train_vae_call(options):
    """Runs one epoch of the C++ trainer directly with a tiny model and the given options dict."""
    model = tiny()
    ps = model.flat_parameters()
    state = fastvae.AdamState.zeros(ps)
    x = torch.randint(0, 256, (8, 6), dtype=torch.uint8)
    with torch.no_grad():
        trainer = _C.MlpTrainer(ps, state.exp_avg, state.exp_avg_sq, model.spec().as_dict(), options)
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
    with pytest.raises(TypeError, match="options must be a fastvae.TrainOptions"):
        tiny().fit(x, options={"epochs": 1}, progress=False)
    with pytest.raises(TypeError, match=r"labels are keyword-only: train_labels="):
        tiny(cond_dim=3).fit(x, torch.zeros(10, dtype=torch.long), progress=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        tiny().fit(x, epoch=1, progress=False)


def test_train_options_round_trip_through_a_checkpoint(tmp_path):
    x = torch.randint(0, 256, (10, 6), dtype=torch.uint8)
    model = tiny()
    opts = TrainOptions(epochs=1, batch_size=5, betas=(0.8, 0.99), eps=1e-7, estimator="stl", kl_weight=2.5,
                        callback_every=3)
    model.fit(x, options=opts, seed=0, progress=False)
    back = fastvae.VAE.load(model.save(tmp_path / "m.pt"))
    assert back.train_options_ == model.train_options_ == opts.validate()
    assert back.spec() == model.spec()


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
