"""The model kinds: :class:`VAE` (MLP encoder and decoder in the fused C++ engine) and :class:`NetworkVAE` (the
user's networks around the objective heads), both :class:`Model` s."""
from .base import Model, check_model
from .mlp import VAE
from .networks import NetworkVAE

__all__ = ["Model", "VAE", "NetworkVAE", "check_model"]
