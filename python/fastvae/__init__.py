"""fastvae: variational autoencoders and variational inference with a fused C++ core on libtorch."""
import torch  # noqa: F401  (loads libtorch before the extension)

from ._extension import load_extension

_C = load_extension()  # checks the torch it was built against, then registers torch.ops.fastvae
from . import _ops, datasets, presets  # noqa: F401
from . import cavi  # noqa: F401
from .arch import ArchSpec
from .options import TrainOptions
from .vae import ELBO, VAE, elbo, iwae, log_likelihood
from .samplers import gumbel_softmax, exponential_rsample, categorical_rsample
from .training import AdamState, History, TrainingDivergedError
from .checkpoint import CheckpointError
from . import heads  # noqa: F401  (objective heads for any encoder/decoder, docs/heads.md)
from . import diagnostics  # noqa: F401  (gradient SNR of the IWAE bound, docs/iwae_dreg.md)

__version__ = "0.1.0"
__all__ = ["VAE", "ELBO", "elbo", "log_likelihood", "datasets", "presets",
           "gumbel_softmax", "exponential_rsample", "categorical_rsample", "AdamState", "History",
           "TrainingDivergedError", "CheckpointError", "TrainOptions", "ArchSpec", "iwae", "heads", "diagnostics"]
