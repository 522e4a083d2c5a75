"""The samplers' reference (Jang, Gu & Poole 2017, eq. 1-2): the Gumbel-softmax sample of logits from given
uniforms, with the Gumbel noise from torch.distributions.Gumbel's inverse CDF."""
import torch
from torch.distributions import Gumbel


def gumbel_softmax_ref(logits, u, tau, dim=-1):
    g = Gumbel(torch.zeros((), dtype=logits.dtype), torch.ones((), dtype=logits.dtype)).icdf(u)
    return torch.softmax((logits + g) / tau, dim)
