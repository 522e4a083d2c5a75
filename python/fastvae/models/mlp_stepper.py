"""The stepper of :class:`fastvae.VAE` for the training driver (:mod:`fastvae.training`): each epoch's updates
run in the fused C++ trainer (``fastvae._C.MlpTrainer``, cpp/training/trainer.h) with the GIL released."""

import torch

from .. import arch
from .._extension import _C
from ..options import Traits
from ..training import EpochResult


class MlpStepper:
    """Trains a VAE's parameters and the Adam state ``state`` (written back at every epoch's end, however it ends;
    frozen parameters, ``requires_grad=False``, are left as they are); implements every training option."""

    @staticmethod
    def traits(model, world: int) -> Traits:
        return Traits(latent=model.latent, binary_likelihood=arch.binary_likelihood(model.likelihood),
                      supported=frozenset(_C.TRAIN_OPTIONS), kind="this VAE", world=world,
                      dtype=torch.float32,  # the trainer's arithmetic
                      hierarchical=bool(model.upper_latents))

    def __init__(self, model, options, data, state, parallel, stop):
        self.data = data
        params = model.flat_parameters()
        self._trainer = _C.MlpTrainer(params, state.exp_avg, state.exp_avg_sq, [p.requires_grad for p in params],
                                      model.spec().as_dict(), options.engine_dict(), stop=stop,
                                      **parallel.loop_args())

    def epoch(self, order, generator, step, on_step, start=0, elbo_sum=0.0) -> EpochResult:
        d = self.data
        with torch.no_grad():
            out = self._trainer.epoch(d.x, d.y, order, generator, step, on_step, start, elbo_sum, d.val_x, d.val_y)
        return EpochResult(out["step"], out["update_rec"].numpy(), out["update_kl"].numpy(), out["completed"],
                           out["elbo_sum"], out["interrupted"], tuple(out["val_done"]), tuple(out["val_rec"]),
                           tuple(out["val_kl"]), out["diverged"], out["error"], out["threads"])

    def evaluate(self, images, labels, generator):
        """Mean (rec, kl) over uint8 images [M, D], as the test ELBO (eval_samples samples per image)."""
        with torch.no_grad():
            return self._trainer.evaluate(images, labels, generator)


__all__ = ["MlpStepper"]
