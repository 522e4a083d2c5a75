"""torch.library.opcheck for every operator of the fastvae library (schema, fake kernel, autograd
registration, AOT dispatch), with small float64 inputs and warnings turned into errors. The list of ops is
read from the library itself, so an op added without a row here fails test_every_op_has_a_row."""
import warnings
from dataclasses import replace

import pytest
import torch

import fastvae
from reference import heads as ref
from fastvae.arch import ArchSpec

ops = torch.ops.fastvae
F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def uniforms(shape, seed):
    # strictly inside (0, 1), as the samplers require of injected noise
    return torch.rand(shape, dtype=F64, generator=gen(seed)).clamp_(1e-6, 1 - 1e-6)


def vae_inputs(cond_dim, requires_grad):
    model = fastvae.VAE(data_dim=7, latent_dim=3, encoder_hidden=(5,), decoder_hidden=(4,), cond_dim=cond_dim,
                        activation="tanh", dtype=F64)
    g = gen(cond_dim)
    x = (torch.rand(4, 7, generator=g) < 0.4).to(F64)
    y = torch.randint(0, cond_dim, (4,), generator=g) if cond_dim else None
    eps = torch.randn(2, 4, 3, generator=g, dtype=F64)
    params = [p.detach().clone().requires_grad_(requires_grad) for p in model.flat_parameters()]
    return x, y, eps, params, model.spec().as_args()


def vae_cases():
    cases = []
    for cond in (0, 3):
        tag = "conditional" if cond else "unconditional"
        x, y, eps, params, arch = vae_inputs(cond, requires_grad=True)
        for name in fastvae._ops.ESTIMATORS:
            cases.append(("vae_elbo", f"{tag}-{name}", (x, y, eps, params, *arch, name)))
        # encode, decode and iwae are not differentiable (an error with grad inputs): plain inputs here
        x, y, eps, params, arch = vae_inputs(cond, requires_grad=False)
        w = torch.linspace(0.5, 1.5, 4, dtype=F64)
        for name in fastvae._ops.ESTIMATORS:
            cases.append(("vae_elbo_backward", f"{tag}-{name}", (w, -w, x, y, eps, params, *arch, name)))
        cases += [("vae_encode", tag, (x, y, params, *arch)),
                  ("vae_decode", tag, (eps[0], y, params, *arch)),
                  ("vae_iwae", tag, (x, y, eps, params, *arch))]
    return cases


def adam_cases():
    shapes = [(3, 4), (4,), (1,)]
    p = [torch.randn(s, dtype=F64, generator=gen(i)) for i, s in enumerate(shapes)]
    g = [torch.randn(s, dtype=F64, generator=gen(10 + i)) for i, s in enumerate(shapes)]
    m = [torch.zeros(s, dtype=F64) for s in shapes]
    v = [torch.zeros(s, dtype=F64) for s in shapes]
    return [("adam_step", "plain", (p, g, m, v, 1, 1e-2, 0.9, 0.999, 1e-8, 0.0)),
            ("adam_step", "weight-decay", (p, g, m, v, 3, 1e-3, 0.8, 0.99, 1e-7, 0.01))]


def cavi_cases():
    g = gen(7)
    n, k = 12, 3
    x = torch.randn(n, 2, dtype=F64, generator=g)
    s = torch.randint(0, 5, (n,), generator=g).to(F64)
    log_pi = torch.full((k,), 1.0 / k, dtype=F64).log()
    m = torch.randn(k, 2, dtype=F64, generator=g)
    prec, shape, rate = (torch.rand(k, dtype=F64, generator=g) + 0.5 for _ in range(3))
    estep_args = (x, s, log_pi, m, prec, shape, rate, 1.0)
    stats, entropy = ops.cavi_estep(*estep_args)
    nu = [0.0, 0.0]
    return [("cavi_estep", "k3", estep_args), ("cavi_responsibilities", "k3", estep_args),
            ("cavi_update_mu", "k3", (stats, 1.0, nu, 1.0)), ("cavi_update_lambda", "k3", (stats, 1.0, 1.0)),
            ("cavi_elbo", "k3", (stats, entropy, -3.0, log_pi, m, prec, shape, rate, 1.0, nu, 1.0, 1.0, 1.0))]


def seed_tensor(value):
    return torch.tensor(value, dtype=torch.int64)


def sampler_cases():
    logits = torch.randn(5, 3, dtype=F64, generator=gen(23)).requires_grad_()
    y = ops.gumbel_softmax_fwd(logits.detach(), uniforms((5, 3), 24), 0.5, -1, None)
    rate = (torch.rand(4, dtype=F64, generator=gen(25)) + 0.2).requires_grad_()
    z = ops.exponential_fwd(rate.detach(), None, [3], seed_tensor(7))
    return [("gumbel_softmax_fwd", "injected-uniforms", (logits, uniforms((5, 3), 24), 0.5, -1, None)),
            ("gumbel_softmax_fwd", "seeded-dim0", (logits, None, 0.5, 0, seed_tensor(123))),
            ("_gumbel_softmax_backward", "dim-1", (torch.randn(5, 3, dtype=F64, generator=gen(26)), y, 0.5, -1)),
            ("_gumbel_softmax_backward", "dim0", (torch.randn(5, 3, dtype=F64, generator=gen(27)), y, 2.0, 0)),
            ("one_hot_argmax", "dim1", (y.clone().requires_grad_(), 1)),
            ("one_hot_argmax", "dim0", (y.clone().requires_grad_(), 0)),
            ("exponential_fwd", "seeded", (rate, None, [3], seed_tensor(7))),
            ("exponential_fwd", "seeded-negative", (rate, None, [2], seed_tensor(-2 ** 63))),
            ("exponential_fwd", "injected-uniforms", (rate, uniforms((2, 4), 28), [2], None)),
            ("exponential_fwd", "0d-rate", (torch.tensor(1.5, dtype=F64, requires_grad=True), uniforms((3,), 29),
                                            [3], None)),
            ("_exponential_backward", "3-samples", (torch.randn(3, 4, dtype=F64, generator=gen(30)), z,
                                                    rate.detach()))]


# The importance-weighted objectives with their groups and beta, on eps of 2 samples per image.
IW_OBJECTIVES = [("iwae", 1, 0.0), ("miwae", 2, 0.0), ("ciwae", 1, 0.3), ("piwae", 2, 0.0)]
assert {o for o, _, _ in IW_OBJECTIVES} == set(fastvae.arch.IW_OBJECTIVES)


def iwae_cases():
    cases = []
    for cond in (0, 3):
        tag = "conditional" if cond else "unconditional"
        x, y, eps, params, arch = vae_inputs(cond, requires_grad=True)
        for name in fastvae._ops.IWAE_ESTIMATORS:
            for objective, groups, beta in IW_OBJECTIVES:
                cases.append(("vae_iwae_bound", f"{tag}-{name}-{objective}",
                              (x, y, eps, params, *arch, name, objective, groups, beta)))
        x, y, eps, params, arch = vae_inputs(cond, requires_grad=False)
        g = torch.linspace(0.5, 1.5, 4, dtype=F64)
        for name in fastvae._ops.IWAE_ESTIMATORS:
            for objective, groups, beta in IW_OBJECTIVES:
                cases.append(("vae_iwae_bound_backward", f"{tag}-{name}-{objective}",
                              (g, x, y, eps, params, *arch, name, objective, groups, beta)))
    return cases


CASES = vae_cases() + adam_cases() + cavi_cases() + sampler_cases() + iwae_cases()


def likelihood_cases():
    """The VAE ops with every other likelihood of the reference table (tests/reference/heads.py) on data it takes,
    with a fixed scale; the Bernoulli default is vae_cases'."""
    cases = []
    for lik, row in ref.LIKELIHOODS.items():
        if lik == "bernoulli":
            continue
        tag = "cb" if lik == "continuous_bernoulli" else lik
        for grad in (True, False):
            _, y, eps, params, arch = vae_inputs(0, requires_grad=grad)
            x = ref.data(lik, (4, 7), gen(41))
            arch = replace(ArchSpec(*arch), likelihood=lik, gaussian_sigma=row.scale).as_args()
            if grad:
                cases += [("vae_elbo", f"{tag}-{n}", (x, y, eps, params, *arch, n)) for n in fastvae._ops.ESTIMATORS]
            else:
                w = torch.linspace(0.5, 1.5, 4, dtype=F64)
                cases += [("vae_elbo_backward", f"{tag}-{n}", (w, -w, x, y, eps, params, *arch, n))
                          for n in fastvae._ops.ESTIMATORS]
                cases += [("vae_encode", tag, (x, y, params, *arch)), ("vae_decode", tag, (eps[0], y, params, *arch)),
                          ("vae_iwae", tag, (x, y, eps, params, *arch))]
    return cases


CASES += likelihood_cases()


def gaussian_scale_cases():
    """The VAE ops with a learned per-pixel Gaussian scale (extra last parameter) and a predicted log-variance
    (decoder output 2D), on real-valued data."""
    cases = []
    for scale in ("learned", "predicted"):
        torch.manual_seed(0)
        m = fastvae.VAE(7, 3, (5,), (4,), dtype=F64, likelihood="gaussian", gaussian_sigma=0.5, gaussian_scale=scale)
        arch = m.spec().as_args()
        x = torch.randn(4, 7, dtype=F64, generator=gen(51))
        eps = torch.randn(2, 4, 3, dtype=F64, generator=gen(52))
        params = [p.detach().clone().requires_grad_() for p in m.flat_parameters()]
        plain = [p.detach() for p in params]
        w = torch.linspace(0.5, 1.5, 4, dtype=F64)
        cases += [("vae_elbo", f"{scale}-{n}", (x, None, eps, params, *arch, n)) for n in fastvae._ops.ESTIMATORS]
        cases += [("vae_elbo_backward", f"{scale}-analytic", (w, -w, x, None, eps, plain, *arch, "analytic")),
                  ("vae_encode", scale, (x, None, plain, *arch)), ("vae_decode", scale, (eps[0], None, plain, *arch)),
                  ("vae_iwae", scale, (x, None, eps, plain, *arch))]
        cases += [("vae_iwae_bound", f"{scale}-{n}", (x, None, eps, params, *arch, n, "iwae", 1, 0.0))
                  for n in fastvae._ops.IWAE_ESTIMATORS]
        cases.append(("vae_iwae_bound_backward", f"{scale}-dreg", (w, x, None, eps, plain, *arch, "dreg", "piwae", 2,
                                                                  0.0)))
    return cases


CASES += gaussian_scale_cases()
def categorical_cases():
    """vae_categorical_elbo (issue 9 item 3): N = 2 variables of K = 3 classes, uniform noise [L, B, N*K]."""
    cases = []
    for cond in (0, 3):
        tag = "conditional" if cond else "unconditional"
        model = fastvae.VAE(data_dim=7, latent_dim=2, categories=3, latent="categorical", encoder_hidden=(5,),
                            decoder_hidden=(4,), cond_dim=cond, activation="tanh", dtype=F64)
        g = gen(50 + cond)
        x = (torch.rand(4, 7, generator=g) < 0.4).to(F64)
        y = torch.randint(0, cond, (4,), generator=g) if cond else None
        u = uniforms((2, 4, 6), 60 + cond)
        arch = model.spec().as_args()
        for grad in (True, False):
            params = [p.detach().clone().requires_grad_(grad) for p in model.flat_parameters()]
            for hard in (False, True):
                name = f"{tag}-{'hard' if hard else 'soft'}"
                if grad:
                    cases.append(("vae_categorical_elbo", name, (x, y, u, params, *arch, 0.7, hard)))
                else:
                    w = torch.linspace(0.5, 1.5, 4, dtype=F64)
                    cases.append(("vae_categorical_elbo_backward", name, (w, -w, x, y, u, params, *arch, 0.7, hard)))
        params = [p.detach() for p in model.flat_parameters()]
        cases += [("vae_encode", f"categorical-{tag}", (x, y, params, *arch)),
                  ("vae_decode", f"categorical-{tag}", (u[0], y, params, *arch))]
    return cases


CASES += categorical_cases()


def upper_latent_cases():
    """The VAE ops of a model with stochastic layers above z1 (upper_latents): the Monte Carlo ELBO, every
    importance-weighted objective, encode and decode."""
    torch.manual_seed(1)
    m = fastvae.VAE(7, 3, (5,), (4,), dtype=F64, activation="tanh", upper_latents=(2,), upper_hidden=(4,))
    arch = m.spec().as_args()
    x = (torch.rand(4, 7, generator=gen(61)) < 0.4).to(F64)
    eps = torch.randn(2, 4, m.noise_dim, dtype=F64, generator=gen(62))
    params = [p.detach().clone().requires_grad_() for p in m.flat_parameters()]
    plain = [p.detach() for p in params]
    w = torch.linspace(0.5, 1.5, 4, dtype=F64)
    cases = [("vae_elbo", f"upper-{n}", (x, None, eps, params, *arch, n)) for n in ("mc", "stl")]
    cases += [("vae_elbo_backward", "upper-mc", (w, -w, x, None, eps, plain, *arch, "mc")),
              ("vae_encode", "upper", (x, None, plain, *arch)), ("vae_decode", "upper", (eps[0, :, :3], None, plain,
                                                                                          *arch)),
              ("vae_iwae", "upper", (x, None, eps, plain, *arch))]
    for objective, groups, beta in IW_OBJECTIVES:
        cases.append(("vae_iwae_bound", f"upper-{objective}", (x, None, eps, params, *arch, "dreg", objective, groups,
                                                               beta)))
        cases.append(("vae_iwae_bound_backward", f"upper-{objective}", (w, x, None, eps, plain, *arch, "stl",
                                                                        objective, groups, beta)))
    return cases


CASES += upper_latent_cases()


def heads_cases():
    """The objective heads (issue 11) on both paths: the fused CPU ops and their _generic_* twins (the
    device-generic ATen implementation), each likelihood / scale with every estimator."""
    cases = []
    for lik, gs, scale in ref.FAMILIES:
        g = gen(70)
        x = torch.rand(3, 4, dtype=F64, generator=g)
        x = (x < 0.5).to(F64) if ref.LIKELIHOODS[lik].data == "binary" else x
        out = torch.randn(2, 3, 8 if scale == "predicted" else 4, dtype=F64, generator=g)
        mu = torch.randn(3, 2, dtype=F64, generator=g)
        sigma = torch.rand(3, 2, dtype=F64, generator=g) + 0.5
        z = mu + sigma * torch.randn(2, 3, 2, dtype=F64, generator=g)
        w = torch.linspace(0.5, 1.5, 3, dtype=F64)
        weights = ops.iwae_bound(x, out, z, mu, sigma, lik, gs, scale, "reparam")[1]
        tag = f"{lik}-{scale}"
        grad = [t.clone().requires_grad_() for t in (out, z, mu, sigma)]
        for prefix in ("", "_generic_"):
            private = prefix or "_"
            for est in ("analytic", "mc", "stl"):
                cases.append((f"{prefix}elbo_terms", f"{tag}-{est}", (x, *grad, lik, gs, scale, est)))
                for flag in (True, False):
                    cases.append((f"{private}elbo_terms_forward", f"{tag}-{est}-{flag}",
                                  (x, out, z, mu, sigma, lik, gs, scale, est, flag)))
                    cases.append((f"{private}elbo_terms_backward", f"{tag}-{est}-{flag}",
                                  (w, -w, x, out, z, mu, sigma, flag, lik, gs, scale, est)))
            for est in ("reparam", "stl", "dreg"):
                cases.append((f"{prefix}iwae_bound", f"{tag}-{est}", (x, *grad, lik, gs, scale, est)))
                for flag in (True, False):
                    cases.append((f"{private}iwae_bound_forward", f"{tag}-{est}-{flag}",
                                  (x, out, z, mu, sigma, lik, gs, scale, est, flag)))
                    cases.append((f"{private}iwae_bound_backward", f"{tag}-{est}-{flag}",
                                  (w, weights, x, out, z, mu, sigma, flag, lik, gs, scale, est)))
    return cases


CASES += heads_cases()


def likelihood_mean_cases():
    """The decoder mean of every family of the reference table, from a decoder output [N, W]."""
    cases = []
    for (lik, gs, scale), tag in zip(ref.FAMILIES, ref.FAMILY_IDS):
        out = torch.randn(3, 8 if scale == "predicted" else 4, dtype=F64, generator=gen(80))
        cases.append(("likelihood_mean", tag, (out, lik, gs, scale)))
    return cases


CASES += likelihood_mean_cases()


def library_ops():
    return sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("fastvae::"))


def test_every_op_has_a_row():
    assert library_ops(), "no fastvae ops registered"
    assert set(library_ops()) == {name for name, _, _ in CASES}


@pytest.mark.parametrize("name,args", [pytest.param(n, a, id=f"{n}-{t}") for n, t, a in CASES])
def test_opcheck(name, args):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.library.opcheck(getattr(ops, name).default, args)

