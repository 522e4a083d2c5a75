"""What every fastvae model kind is: a ``torch.nn.Module`` with the objectives (``elbo``, ``iwae``,
``log_likelihood``), ``encode`` / ``decode`` / ``sample`` / ``reconstruct``, the one training driver's ``fit``
and the one checkpoint format's ``save``. The public functions (:mod:`fastvae.api`) call these methods; the
model kinds are :class:`fastvae.VAE` (the fused C++ engine) and :class:`fastvae.NetworkVAE` (the user's
networks around the objective heads)."""
from torch import nn

from .. import _checks, checkpoint, training
from .._lock import mid_epoch_in_this_thread, reading


def group_samples(where: str, groups: int, k, eps):
    """Samples per image to draw for MIWAE / PIWAE(groups, k): groups * k (k checked); None when eps is given (the
    noise checks read its count; :func:`check_groups` then checks it against groups)."""
    return None if eps is not None else groups * _checks.integer(where, "k", k, min=1)


def check_groups(where: str, samples: int, groups: int) -> None:
    """ValueError unless the samples per image split into ``groups`` groups of equal size."""
    if samples % groups:
        raise ValueError(f"{where}: eps holds {samples} samples per image, which do not split into groups={groups} "
                         "groups of equal size")


class Model(nn.Module):
    """Base of the model kinds. A kind implements:

    - the objectives ``elbo(x, n_samples, *, eps, y, estimator, generator, ...)`` -> :class:`fastvae.ELBO`,
      ``iwae(x, k, *, eps, y, estimator, generator)``, Rainforth et al.'s ``miwae(x, groups, k, ...)``,
      ``ciwae(x, k, beta, ...)`` and ``piwae(x, groups, k, ...)`` (keywords as ``iwae``'s), and
      ``log_likelihood(x, k, *, y, batch_size, generator)``;
    - ``flat_parameters()``: the parameters in the order of :class:`fastvae.AdamState`;
    - ``_check_trainable(where)``: raise if ``fit`` cannot train the model as it is;
    - ``_traits(world)``: what its stepper implements (:class:`fastvae.options.Traits`), and
      ``_stepper(options, data, state, parallel, stop)``: the object that runs one epoch's updates and evaluates data
      (:mod:`fastvae.training`);
    - ``_checkpoint_kind`` and ``_checkpoint_config()``: its name and constructor arguments in checkpoints.

    Fitted state (None before the first fit): ``history_``, ``optimizer_state_``, ``generator_state_``,
    ``train_options_``, and ``epoch_state_``: the epoch a fit stopped inside (Ctrl-C, divergence, a callback's
    exception), which the next ``fit`` finishes first (order, updates done, ELBO sum, seconds), or None.
    """

    _checkpoint_kind = ""

    def __init__(self):
        super().__init__()
        self.history_ = None
        self.optimizer_state_ = None
        self.generator_state_ = None
        self.train_options_ = None
        self.epoch_state_ = None

    fit = training.fit  # model.fit(train_images, options=None, *, train_labels=None, ...): see fastvae.fit

    def save(self, path):
        """Write the model and its training state (configuration, weights, Adam state, the run's generator,
        history, last TrainOptions) to ``path`` atomically (:mod:`fastvae.checkpoint`); loading it and calling
        ``fit`` continues the run exactly. ``state_dict()`` stays the plain weights.

        Raises: TypeError (path not a str / PathLike), ValueError (a folder), FileNotFoundError (its folder does
        not exist)."""
        where = f"fastvae.{type(self).__name__}.save"
        if mid_epoch_in_this_thread(self):
            raise RuntimeError(f"{where}: called from a \"step\" callback of this model's fit, between two update "
                               "boundaries; save from an \"epoch\" callback, after fit returns, or with "
                               "fit(checkpoint=...)")
        with reading(self):
            return checkpoint.save(self, path, where)


def check_model(where: str, model) -> Model:
    """``model`` if it is a fastvae model, else TypeError: the public functions take any model kind."""
    if not isinstance(model, Model):
        raise TypeError(f"{where}: model must be a fastvae model (fastvae.VAE, or VAE.from_networks), got "
                        f"{type(model).__name__}")
    return model
