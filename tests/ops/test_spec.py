"""One description of the architecture, read by Python and C++ alike: the enum names come from the C++ tables,
ArchSpec's fields are the schemas' architecture arguments, and each side rejects what the other lacks. The
training options' table: tests/training/test_options.py."""
import dataclasses

import pytest
import torch

import fastvae
from fastvae import _C
from fastvae.arch import names as arch_names

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
