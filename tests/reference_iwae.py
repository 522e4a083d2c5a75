"""Plain PyTorch IWAE (Burda et al. 2016) on the homework reference VAEs (reference_vaes.RefVAE), written with
torch.distributions, and its three encoder gradients: reparameterization (autograd of the bound), STL
(Roeder et al. 2017: q's parameters detached inside log q) and DReG (Tucker et al. 2018, arXiv 1810.04152:
encoder surrogate sum_l stopgrad(wn_l^2) log w_l with q's parameters detached inside log q, decoder from the
plain bound)."""
import math

import torch
from torch.distributions import Bernoulli, Normal


def ref_log_weights(ref, x, eps, y=None, detach_q=False):
    """log w_l = log p(x | z_l) + log p(z_l) - log q(z_l | x), [K, B], z_l = mu + sigma eps_l."""
    K, B, Z = eps.shape
    qz = ref.q(x, y)
    z = qz.loc + qz.scale * eps
    yy = None if y is None else y.repeat(K)
    log_px = Bernoulli(logits=ref.logits(z.reshape(K * B, Z), yy)).log_prob(x.repeat(K, 1)).sum(-1).reshape(K, B)
    prior = Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale))
    q_eval = Normal(qz.loc.detach(), qz.scale.detach()) if detach_q else qz
    return log_px + prior.log_prob(z).sum(-1) - q_eval.log_prob(z).sum(-1)


def ref_bound(lw):
    return torch.logsumexp(lw, 0) - math.log(lw.shape[0])


def ref_grads(ref, x, eps, y, u, estimator):
    """Gradient of sum_i u_i iwae_i in fastvae's parameter order, by the estimator's definition."""
    if estimator == "reparam":
        return ref.grads_in_fastvae_order((u * ref_bound(ref_log_weights(ref, x, eps, y))).sum())
    lw = ref_log_weights(ref, x, eps, y, detach_q=True)
    wn = torch.softmax(lw, 0).detach()
    if estimator == "stl":
        return ref.grads_in_fastvae_order((u * ref_bound(lw)).sum())
    # DReG: encoder from the wn^2 surrogate, decoder from the plain bound (two autograd calls, combined).
    enc = ref.grads_in_fastvae_order((u * (wn ** 2 * lw).sum(0)).sum())
    dec = ref.grads_in_fastvae_order((u * ref_bound(ref_log_weights(ref, x, eps, y))).sum())
    n_enc = 2 * (len(ref.enc) + 1)
    return enc[:n_enc] + dec[n_enc:]
