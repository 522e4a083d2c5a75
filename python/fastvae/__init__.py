"""fastvae: variational autoencoders and variational inference with a fused C++ core on libtorch."""
import torch  # noqa: F401  (loads libtorch before the extension)

from ._extension import _C  # noqa: F401  (checks the torch it was built against, registers torch.ops.fastvae)
from . import _ops, datasets, presets  # noqa: F401,E402
from . import cavi  # noqa: F401,E402
from ._version import __version__  # noqa: E402
from .api import elbo, fit, iwae, log_likelihood  # noqa: E402
from .arch import ArchSpec  # noqa: E402
from .models import VAE, NetworkVAE  # noqa: E402
from .options import TrainOptions  # noqa: E402
from .samplers import categorical_rsample, exponential_rsample, gumbel_softmax  # noqa: E402
from .types import ELBO, AdamState, CheckpointError, History, PIWAEBounds, TrainingDivergedError  # noqa: E402
from . import heads  # noqa: F401,E402  (objective heads for any encoder/decoder, docs/heads.md)
from . import diagnostics  # noqa: F401,E402  (gradient SNR of the IWAE bound, docs/iwae_dreg.md)

__all__ = ["VAE", "NetworkVAE", "ELBO", "PIWAEBounds", "fit", "elbo", "iwae", "log_likelihood", "datasets", "presets",
           "gumbel_softmax", "exponential_rsample", "categorical_rsample", "AdamState", "History",
           "TrainingDivergedError", "CheckpointError", "TrainOptions", "ArchSpec", "heads", "diagnostics"]
