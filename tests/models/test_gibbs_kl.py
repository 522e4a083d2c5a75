"""ESE 546 HW5 Problem 1: for a Gibbs distribution p(w) = exp(-beta Phi(w)) / Z(beta) on a finite set,

    KL(q || p) = beta sum_w q(w) Phi(w) + sum_w q(w) log q(w) + log Z(beta).

The right-hand side is checked against torch.distributions' Categorical KL (the reference) in float64,
for random energies, distributions and inverse temperatures, q with zero entries (0 log 0 = 0), large beta
(p nearly one-hot) and q = p (KL = 0). The notebook notebooks/ese546_hw5.ipynb shows the same identity.
"""
import pytest
import torch
from torch.distributions import Categorical, kl_divergence


def kl_gibbs(q, phi, beta):
    """Right-hand side of the identity; q [n] float64 on the simplex, phi [n] energies, beta > 0."""
    log_z = torch.logsumexp(-beta * phi, dim=0)
    return beta * (q * phi).sum() + torch.special.xlogy(q, q).sum() + log_z


def kl_reference(q, phi, beta):
    """KL(q || p) from torch.distributions: -H(q) minus the cross term with p's normalized log-probabilities."""
    p = Categorical(logits=-beta * phi)
    return -Categorical(probs=q).entropy() - (q * p.logits).sum()  # p.logits: log p, finite even where p underflows


def assert_identity(q, phi, beta):
    # The terms are of size ~ beta * max|Phi| and cancel for large beta, so float64 round-off scales with them.
    scale = 1.0 + beta * phi.abs().max().item()
    lhs = kl_gibbs(q, phi, beta)
    torch.testing.assert_close(lhs, kl_reference(q, phi, beta), rtol=1e-12, atol=1e-13 * scale)
    p = Categorical(logits=-beta * phi)
    if (p.probs > 0).all():  # kl_divergence returns inf where p(w) underflows to 0 (large beta)
        torch.testing.assert_close(lhs, kl_divergence(Categorical(probs=q), p), rtol=1e-12, atol=1e-13 * scale)


def draw(seed, n, phi_scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    phi = phi_scale * torch.randn(n, generator=gen, dtype=torch.float64)
    q = torch.softmax(torch.randn(n, generator=gen, dtype=torch.float64), dim=0)
    return gen, phi, q


@pytest.mark.parametrize("n", [2, 7, 50, 1000])
@pytest.mark.parametrize("beta", [0.01, 0.5, 1.0, 3.7, 50.0, 1e3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identity_random(seed, n, beta):
    _, phi, q = draw(seed, n, phi_scale=3.0)
    assert_identity(q, phi, beta)


@pytest.mark.parametrize("beta", [0.3, 2.0, 1e3])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_identity_q_with_zeros(seed, beta):
    gen, phi, q = draw(seed, 50)
    q = q * (torch.rand(50, generator=gen) < 0.5)  # about half of the states get q(w) = 0
    q[seed] = 0.1  # at least one state keeps mass
    q = q / q.sum()
    assert (q == 0).any()
    assert_identity(q, phi, beta)


@pytest.mark.parametrize("state", [0, 17, 49])
def test_identity_q_point_mass(state):
    # q one-hot: KL = beta Phi(w0) + log Z(beta) = -log p(w0)
    _, phi, _ = draw(state, 50)
    q = torch.zeros(50, dtype=torch.float64)
    q[state] = 1.0
    beta = 2.5
    assert_identity(q, phi, beta)
    expected = -torch.log_softmax(-beta * phi, dim=0)[state]
    torch.testing.assert_close(kl_gibbs(q, phi, beta), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("beta", [0.2, 1.0, 20.0])
def test_identity_is_zero_at_p(beta):
    _, phi, _ = draw(5, 50)
    p = torch.softmax(-beta * phi, dim=0)
    assert_identity(p, phi, beta)
    torch.testing.assert_close(kl_gibbs(p, phi, beta), torch.zeros((), dtype=torch.float64),
                               rtol=0, atol=1e-12 * (1 + beta * phi.abs().max().item()))


def test_free_energy_bounds_log_partition():
    # KL >= 0 gives -log Z(beta) <= beta E_q[Phi] - H(q); a different q must give a strictly positive gap
    _, phi, q = draw(11, 50)
    beta = 1.3
    free_energy = beta * (q * phi).sum() + torch.special.xlogy(q, q).sum()
    gap = free_energy + torch.logsumexp(-beta * phi, dim=0)
    assert gap > 1e-3
    torch.testing.assert_close(gap, kl_reference(q, phi, beta), rtol=1e-12, atol=1e-12)
