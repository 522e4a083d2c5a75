"""The architecture of a :class:`fastvae.VAE` as the C++ engine receives it.

Every VAE op takes the architecture as named, typed schema arguments (``FASTVAE_ARCH_SCHEMA`` in
cpp/vae_spec.h, spliced into every schema in cpp/ops.cpp). :class:`ArchSpec` has exactly those fields, in
schema order, so ``op(x, y, params, *spec.as_args())`` is the whole protocol and the fake kernels read
fields by name. Enum values travel as names; the valid names come from the C++ tables
(``fastvae._C.ACTIVATIONS``, ``POSTERIORS``, ``ESTIMATORS``, ``LIKELIHOODS``), the only place they are listed.
"""
from dataclasses import astuple, dataclass, fields
from typing import Tuple

from ._extension import _C

ACTIVATIONS: Tuple[str, ...] = tuple(_C.ACTIVATIONS)
POSTERIORS: Tuple[str, ...] = tuple(_C.POSTERIORS)
ESTIMATORS: Tuple[str, ...] = tuple(_C.ESTIMATORS)
LIKELIHOODS: Tuple[str, ...] = tuple(_C.LIKELIHOODS)
IWAE_ESTIMATORS: Tuple[str, ...] = tuple(_C.IWAE_ESTIMATORS)  # encoder gradients of the IWAE bound
GAUSSIAN_SCALES: Tuple[str, ...] = tuple(_C.GAUSSIAN_SCALES)  # fixed, learned, predicted
LATENTS: Tuple[str, ...] = tuple(_C.LATENTS)  # latent families: gaussian, categorical
OBJECTIVES: Tuple[str, ...] = tuple(_C.OBJECTIVES)  # training objectives: elbo, iwae, miwae, ciwae, piwae
IW_OBJECTIVES: Tuple[str, ...] = tuple(o for o in OBJECTIVES if o != "elbo")  # the importance-weighted ones


LIKELIHOOD_DATA = dict(_C.LIKELIHOOD_DATA)  # what each likelihood takes: "binary", "unit_interval" or "real"


def binary_likelihood(likelihood: str) -> bool:
    """Whether the likelihood takes 0/1 data only (bernoulli), from the C++ likelihood table."""
    return LIKELIHOOD_DATA[likelihood] == "binary"


@dataclass(frozen=True)
class ArchSpec:
    """Architecture arguments of the VAE ops, in schema order (see :class:`fastvae.VAE` for meanings):
    sizes D, C, Z and the hidden layer sizes (ints), activation names, the leaky_relu slope (float), the
    decoder likelihood's name, the fixed scale of the Gaussian likelihood (float > 0), how the Gaussian
    scale is set (``"fixed"``, ``"learned"``, ``"predicted"``), the latent family (``"gaussian"`` or
    ``"categorical"``), the class count K of a categorical latent (0 for Gaussian), and the sizes of the stochastic
    layers above z1 with the hidden sizes of the MLPs between them (empty: one stochastic layer)."""

    data_dim: int
    cond_dim: int
    latent_dim: int
    encoder_hidden: Tuple[int, ...]
    decoder_hidden: Tuple[int, ...]
    activation: str
    negative_slope: float
    posterior: str
    mean_activation: str
    scale_activation: str
    likelihood: str = "bernoulli"
    gaussian_sigma: float = 1.0
    gaussian_scale: str = "fixed"
    latent: str = "gaussian"
    categories: int = 0
    upper_latents: Tuple[int, ...] = ()
    upper_hidden: Tuple[int, ...] = ()

    @property
    def code_dim(self) -> int:
        """Width of the decoder's latent input: latent_dim (Gaussian) or latent_dim * categories (one-hot codes)."""
        return self.latent_dim * self.categories if self.latent == "categorical" else self.latent_dim

    @property
    def noise_dim(self) -> int:
        """Noise per sample and image: code_dim for a categorical latent, else z1's and every upper layer's sizes."""
        return self.code_dim if self.latent == "categorical" else self.latent_dim + sum(self.upper_latents)

    def as_args(self) -> tuple:
        """The op arguments in schema order (layer sizes as lists, as the ``int[]`` arguments take them)."""
        return tuple(list(v) if isinstance(v, tuple) else v for v in astuple(self))

    def as_dict(self) -> dict:
        """Field name -> value (what the C++ trainer, ``fastvae._C.MlpTrainer``, reads by name)."""
        return dict(zip(names(), self.as_args()))


def names() -> Tuple[str, ...]:
    """The field names, which are the schema's architecture argument names."""
    return tuple(f.name for f in fields(ArchSpec))
