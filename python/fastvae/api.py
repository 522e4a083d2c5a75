"""The public functions of fastvae: ``fit``, ``elbo``, ``iwae`` and ``log_likelihood`` take any model kind and
call its methods (:class:`fastvae.models.Model`), so each is defined once, on the model."""
from typing import Optional

import torch

from .models import check_model
from .types import ELBO, History


def fit(model, train_images, options=None, **kwargs) -> History:
    """Train ``model`` (a :class:`fastvae.VAE` or ``VAE.from_networks``) in place: ``model.fit(train_images,
    options, train_labels=..., ...)``; arguments, returns and errors: the one training driver,
    :func:`fastvae.training.fit`."""
    return check_model("fastvae.fit", model).fit(train_images, options, **kwargs)


def elbo(model, x, n_samples: int = 1, eps: Optional[torch.Tensor] = None, y=None, estimator: str = "analytic",
         generator: Optional[torch.Generator] = None, temperature: Optional[float] = None, hard: bool = False) -> ELBO:
    """Per-image ELBO, expected log-likelihood and KL of ``model`` on images x (nats, each [B]):
    ``model.elbo(x, n_samples, eps=..., y=..., ...)``; arguments, returns and errors: :meth:`fastvae.VAE.elbo`
    (a model with custom networks: :meth:`fastvae.NetworkVAE.elbo`). TypeError if ``model`` is not a fastvae model."""
    return check_model("elbo", model).elbo(x, n_samples, eps=eps, y=y, estimator=estimator, generator=generator,
                                           temperature=temperature, hard=hard)


def iwae(model, x, k: int = 5, eps: Optional[torch.Tensor] = None, y=None, estimator: str = "reparam",
         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Per-image IWAE bound (Burda et al. 2016) with k samples, differentiable, encoder gradient by ``estimator``
    (reparam, stl, dreg): ``model.iwae(x, k, ...)``; see :meth:`fastvae.VAE.iwae`. TypeError if ``model`` is not a
    fastvae model."""
    return check_model("iwae", model).iwae(x, k, eps=eps, y=y, estimator=estimator, generator=generator)


def log_likelihood(model, x, k: int = 1000, y=None, batch_size: Optional[int] = None,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) per image (nats, [B]) with k samples (Burda et al. 2016):
    ``model.log_likelihood(x, k, ...)``; ``batch_size`` None keeps the model's default chunking (100 images for a
    :class:`fastvae.VAE`). See :meth:`fastvae.VAE.log_likelihood`. TypeError if ``model`` is not a fastvae model."""
    extra = {} if batch_size is None else {"batch_size": batch_size}
    return check_model("log_likelihood", model).log_likelihood(x, k, y=y, generator=generator, **extra)


__all__ = ["fit", "elbo", "iwae", "log_likelihood"]
