"""The stepper of :class:`fastvae.NetworkVAE` for the training driver (:mod:`fastvae.training`): a torch step
(the user's networks, fastvae's objective heads, torch.optim.Adam) on whatever device the parameters live."""
import numpy as np
import torch

from .. import arch
from .._extension import _C
from ..options import Traits
from ..training import EpochResult

# The options this stepper implements; any other option set away from its default is refused (fastvae.options),
# so an option added later is refused here until this stepper implements it.
SUPPORTED = frozenset(("batch_size", "n_samples", "lr", "betas", "eps", "weight_decay", "threshold",
                       "estimator", "kl_weight", "eval_samples", "callback_every", "pixels", "objective", "k",
                       "groups", "ciwae_beta", "iwae_estimator", "kl_warmup"))


def iw_bound(model, o, x, eps):
    """The per-image importance-weighted training objective of options ``o`` on x with the noise eps."""
    if o.objective == "ciwae":
        return model.ciwae(x, beta=o.ciwae_beta, eps=eps, estimator=o.iwae_estimator)
    if o.objective in ("miwae", "piwae"):
        return getattr(model, o.objective)(x, o.groups, eps=eps, estimator=o.iwae_estimator)
    return model.iwae(x, eps=eps, estimator=o.iwae_estimator)


class NetworkStepper:
    """Each update: the batch's pixels from ``fastvae._C.gather_pixels`` and its noise [L, B, Z] from the run's
    CPU generator (so a run is the same on every device), one Adam step (torch.optim.Adam on the trainable
    parameters, its moments the tensors of the model's AdamState) on ``-mean(rec - kl_weight * warm-up * kl)``
    (objective "elbo") or ``-mean(bound)`` (the importance-weighted objectives, the model's ``iwae``, ``miwae``,
    ``ciwae`` or ``piwae``). Data parallel: one all_reduce per update sums the
    gradients and the batch's rec and kl sums over the ranks."""

    @staticmethod
    def traits(model, world: int) -> Traits:
        return Traits(latent="gaussian", binary_likelihood=arch.binary_likelihood(model.likelihood),
                      supported=SUPPORTED, kind="a model with custom networks", world=world, dtype=model._dtype())

    def __init__(self, model, options, data, state, parallel, stop):
        self.model, self.o, self.data, self.state, self.parallel, self.stop = model, options, data, state, parallel, stop
        # frozen parameters (requires_grad=False) stay out of the optimizer, as with torch.optim
        self.params = [p for p in model.flat_parameters() if p.requires_grad]
        o = options
        self.opt = torch.optim.Adam(self.params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
        self.moments = []
        for p, m, v in zip(model.flat_parameters(), state.exp_avg, state.exp_avg_sq):
            if p.requires_grad:  # the moments carry over from fit to fit and into checkpoints
                self.opt.state[p] = {"step": torch.tensor(float(state.step)), "exp_avg": m, "exp_avg_sq": v}
                self.moments += [m, v]

    def _pixels(self, images, rows, generator):
        x = _C.gather_pixels(images, rows, self.o.threshold, self.o.pixels, generator)
        return x.to(self.model._device(), self.model._dtype())

    def _update(self, x, eps, step):
        """One update on this rank's rows of the global batch x [n, D]; returns the batch means (rec, kl) and what
        diverged (None, "loss" or "gradient")."""
        o, model, parallel = self.o, self.model, self.parallel
        n = x.shape[0]
        a, m = parallel.rank * n // parallel.world, (parallel.rank + 1) * n // parallel.world
        m -= a
        self.opt.zero_grad(set_to_none=True)
        dtype, device = model._dtype(), model._device()
        xs, es = x[a:a + m], eps[:, a:a + m]
        try:
            if m == 0:
                rec = kl = torch.zeros((), dtype=dtype, device=device)
            elif o.objective != "elbo":
                rec = iw_bound(model, o, xs, es).sum()
                kl = torch.zeros((), dtype=dtype, device=device)
                (-rec / n).backward()
            else:
                terms = model.elbo(xs, eps.shape[0], eps=es, estimator=o.estimator)
                rec, kl = terms.rec.sum(), terms.kl.sum()
                warm = min(1.0, step / o.kl_warmup) if o.kl_warmup > 0 else 1.0
                (-(rec - o.kl_weight * warm * kl) / n).backward()
        except ValueError:
            # The heads refuse non-finite inputs: if the networks' own outputs on this batch overflowed, the run
            # diverged (a NaN loss, so that every rank agrees after the all_reduce); anything else is the error.
            if not self._overflows(xs, es):
                raise
            self.opt.zero_grad(set_to_none=True)
            rec = kl = torch.full((), float("nan"), dtype=dtype, device=device)
        sums = torch.stack([rec.detach(), kl.detach()]).to(torch.float64).cpu()
        if parallel.world > 1:
            sums = self._all_reduce(sums)
        r, k = float(sums[0]) / n, float(sums[1]) / n
        if not (np.isfinite(r) and np.isfinite(k)):
            return r, k, "loss"
        if not all(p.grad is None or torch.isfinite(p.grad).all() for p in self.params):
            return r, k, "gradient"
        with torch.no_grad():  # the boundary, put back if the step's result is not finite
            saved = [t.clone() for t in (*self.params, *self.moments)]
            steps = [self.opt.state[p]["step"].clone() for p in self.params]
        try:
            self.opt.step()
            finite = all(torch.isfinite(t).all() for t in (*self.params, *self.moments))
        except RuntimeError:  # torch.optim refuses a step size that overflows the dtype, midway through the step
            finite = False
        if not finite:
            with torch.no_grad():
                for t, old in zip((*self.params, *self.moments), saved):
                    t.copy_(old)
                for p, st in zip(self.params, steps):
                    self.opt.state[p]["step"].copy_(st)
            return r, k, "parameters"
        return r, k, None

    @torch.no_grad()
    def _overflows(self, x, eps) -> bool:
        """Whether the networks' posterior or decoder output on this batch is not finite."""
        mu, sigma = self.model._posterior(x)
        z = mu + sigma * eps
        out = self.model._decode_rows(z)
        return not all(bool(torch.isfinite(t).all()) for t in (mu, sigma, out))

    def _all_reduce(self, sums):
        """Sum every gradient and the batch's (rec, kl) sums over the ranks with one all_reduce of one buffer."""
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
        flat = torch.cat([g.reshape(-1).to(torch.float64) for g in grads] + [sums.to(grads[0].device)])
        self.parallel.all_reduce(flat)
        off = 0
        for p, g in zip(self.params, grads):
            p.grad = flat[off:off + g.numel()].view_as(g).to(g.dtype)
            off += g.numel()
        return flat[off:].cpu()

    def epoch(self, order, generator, step, on_step, start=0, elbo_sum=0.0) -> EpochResult:
        o, d = self.o, self.data
        n = order.shape[0]
        B = min(o.batch_size, n)
        per_epoch = -(-n // B)
        L = o.n_samples if o.objective == "elbo" else o.k * o.groups
        recs, kls = [], []
        result = dict(diverged=None, error=None, interrupted=False)
        for b in range(start, per_epoch):
            if self.stop is not None and self.stop[0]:  # Ctrl-C (fastvae._interrupts): stop at this boundary
                result["interrupted"] = True
                break
            before = generator.get_state()  # the boundary's generator, put back if this update is dropped
            x = self._pixels(d.x, order[b * B:(b + 1) * B], generator)
            eps = torch.randn(L, x.shape[0], self.model.latent_dim, generator=generator)
            eps = eps.to(self.model._device(), self.model._dtype())
            try:
                r, k, diverged = self._update(x, eps, step)
            except BaseException as e:  # the networks or the heads refused this batch: stop at the boundary
                self.opt.zero_grad(set_to_none=True)
                generator.set_state(before)
                result["error"] = e
                break
            if diverged is not None:
                generator.set_state(before)
                result["diverged"] = diverged
                break
            step += 1
            recs.append(r)
            kls.append(k)
            elbo_sum += (r - k) * x.shape[0]
            done = start + len(recs)
            if o.callback_every > 0 and (done % o.callback_every == 0 or b + 1 == per_epoch):
                try:
                    on_step(done, r, k)
                except BaseException as e:  # a callback's exception: stop at this update boundary
                    result["error"] = e
                    break
        if self.stop is not None and self.stop[0]:
            result["interrupted"] = True
        return EpochResult(step, np.array(recs, dtype=np.float64), np.array(kls, dtype=np.float64),
                           start + len(recs) == per_epoch, elbo_sum, threads=torch.get_num_threads(), **result)

    @torch.no_grad()
    def evaluate(self, images, labels, generator):
        """Mean (rec, kl) over uint8 images [M, D] with eval_samples samples per image, in chunks of 500 images."""
        o, model = self.o, self.model
        rec = kl = 0.0
        rows = torch.arange(images.shape[0])
        for s in range(0, images.shape[0], 500):
            x = self._pixels(images, rows[s:s + 500], generator)
            eps = torch.randn(o.eval_samples, x.shape[0], model.latent_dim, generator=generator)
            out = model.elbo(x, o.eval_samples, eps=eps.to(model._device(), model._dtype()), estimator=o.estimator)
            rec += float(out.rec.sum())
            kl += float(out.kl.sum())
        return rec / images.shape[0], kl / images.shape[0]


__all__ = ["NetworkStepper", "SUPPORTED"]
