"""Thin wrappers over the torch.ops.fastvae CAVI kernels (cpp/cpu/cavi_kernel.cpp) and their fake kernels.

The CAVI updates are closed-form coordinate ascent, not gradient steps, so the ops have no autograd
formula; the fake kernels let them be traced by torch.compile.
"""
import torch

from .._extension import _C  # noqa: F401  (registers the ops)
from .._ops import check_devices

ops = torch.ops.fastvae
N_STATS = 5  # [N_k, sum r x_0, sum r x_1, sum r ||x||^2, sum r S]


@torch.library.register_fake("fastvae::cavi_estep")
def _estep_fake(x, s, log_pi, m, prec, shape, rate, tau):
    check_devices("cavi_estep", x=x, s=s, log_pi=log_pi, m=m, prec=prec, shape=shape, rate=rate)
    return x.new_empty(log_pi.shape[0], N_STATS), x.new_empty(())


@torch.library.register_fake("fastvae::cavi_responsibilities")
def _resp_fake(x, s, log_pi, m, prec, shape, rate, tau):
    check_devices("cavi_responsibilities", x=x, s=s, log_pi=log_pi, m=m, prec=prec, shape=shape, rate=rate)
    return x.new_empty(x.shape[0], log_pi.shape[0])


@torch.library.register_fake("fastvae::cavi_update_mu")
def _update_mu_fake(stats, tau, nu, rho):
    check_devices("cavi_update_mu", stats=stats)
    return stats.new_empty(stats.shape[0], 2), stats.new_empty(stats.shape[0])


@torch.library.register_fake("fastvae::cavi_update_lambda")
def _update_lambda_fake(stats, alpha, beta):
    check_devices("cavi_update_lambda", stats=stats)
    return stats.new_empty(stats.shape[0]), stats.new_empty(stats.shape[0])


@torch.library.register_fake("fastvae::cavi_elbo")
def _elbo_fake(stats, entropy, log_fact, log_pi, m, prec, shape, rate, tau, nu, rho, alpha, beta):
    check_devices("cavi_elbo", stats=stats, entropy=entropy, log_pi=log_pi, m=m, prec=prec, shape=shape, rate=rate)
    return stats.new_empty(())


def estep(x, s, log_pi, m, prec, shape, rate, tau):
    """Fused q(Z) update: statistics [K, 5] float64 and the entropy of q(Z) (0-d), without the N x K matrix."""
    return ops.cavi_estep(x, s, log_pi, m, prec, shape, rate, float(tau))


def responsibilities(x, s, log_pi, m, prec, shape, rate, tau):
    """q(Z) responsibilities r_nk, [N, K] float64."""
    return ops.cavi_responsibilities(x, s, log_pi, m, prec, shape, rate, float(tau))


def update_mu(stats, tau, nu, rho):
    """q(mu_k) = N(m_k, prec_k^-1 I): returns m [K, 2] and prec [K]."""
    return ops.cavi_update_mu(stats, float(tau), [float(v) for v in nu], float(rho))


def update_lambda(stats, alpha, beta):
    """q(lambda_k) = Gamma(shape_k, rate_k): returns shape [K] and rate [K]."""
    return ops.cavi_update_lambda(stats, float(alpha), float(beta))


def elbo(stats, entropy, log_fact, log_pi, m, prec, shape, rate, tau, nu, rho, alpha, beta):
    """The full ELBO (every constant kept), a Python float."""
    return float(ops.cavi_elbo(stats, entropy, float(log_fact), log_pi, m, prec, shape, rate, float(tau),
                               [float(v) for v in nu], float(rho), float(alpha), float(beta)))
