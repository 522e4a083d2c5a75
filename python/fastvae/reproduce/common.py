"""Pieces every homework reproduction shares: the run context, data loading, per-epoch printing,
atomic writes of metrics.json and model.pt."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .. import _checks, datasets, presets
from ..models import VAE
from .._atomic import atomic_write
from ..plotting import save_figure

CHECKPOINT, RUN = "checkpoint.pt", "run.json"


@dataclass
class Context:
    """What a reproduction needs: output folder, data folder, overrides and console output.

    epochs: None keeps the homework's number; kl_weight: None keeps the preset's (cvae_hw7 only);
    objective, k, groups, ciwae_beta: None keep the preset's training objective, its number of samples, MIWAE's and
    PIWAE's M and CIWAE's beta (iwae_paper and iwae_paper_2layer only).
    limit: use only the first ``limit`` training and test images (for quick checks and tests). log: prints one line (the CLI's stdout).
    """

    name: str
    out: Path
    data: Optional[Path] = None
    epochs: Optional[int] = None
    seed: int = 0
    progress: bool = True
    limit: Optional[int] = None
    log: Callable[[str], None] = print
    figures: list = field(default_factory=list)
    kl_weight: Optional[float] = None
    resume: bool = False
    objective: Optional[str] = None
    k: Optional[int] = None
    groups: Optional[int] = None
    ciwae_beta: Optional[float] = None

    @property
    def checkpoint(self) -> Path:
        """out/checkpoint.pt: the model and its training state after the last completed epoch."""
        return self.out / CHECKPOINT

    @property
    def preset(self):
        return presets.get(self.name)

    def overrides(self) -> dict:
        """The training settings the command line replaces: --epochs, --kl-weight, and --objective / --k
        (an importance-weighted bound with k samples (per group for MIWAE and PIWAE), or the ELBO averaged over k
        Monte Carlo samples: n_samples = k), --groups, --ciwae-beta."""
        o = {}
        if self.epochs is not None:
            o["epochs"] = int(self.epochs)
        if self.kl_weight is not None:
            o["kl_weight"] = float(self.kl_weight)
        if self.objective is not None:
            o["objective"] = self.objective
        if self.k is not None or self.objective is not None:
            k = self.k if self.k is not None else self.preset.train.get("k", 1)
            weighted = (self.objective or self.preset.train.get("objective", "elbo")) != "elbo"
            o.update(k=int(k), n_samples=1 if weighted else int(k))
        if self.groups is not None:
            o["groups"] = int(self.groups)
        if self.ciwae_beta is not None:
            o["ciwae_beta"] = float(self.ciwae_beta)
        return o

    def train_settings(self) -> dict:
        return dict(self.preset.train, **self.overrides())

    def train_options(self):
        """The :class:`fastvae.TrainOptions` ``fit`` trains with: the preset's, with the command line's."""
        return self.preset.options(**self.overrides())

    def figure(self, fig, filename: str) -> str:
        """Save ``fig`` as out/filename (atomically) and remember it for metrics.json."""
        save_figure(fig, self.out / filename)
        self.figures.append(filename)
        return filename


def load(ctx: Context, split: str):
    """MNIST ``split`` as (uint8 [N, 28, 28], int64 [N]), cut to ``ctx.limit`` images if set."""
    x, y = datasets.load_mnist(split, root=ctx.data, download=ctx.data is None)
    if ctx.limit is not None:
        x, y = x[:ctx.limit], y[:ctx.limit]
    return x, y


def binary(images: torch.Tensor, threshold: int) -> torch.Tensor:
    """float32 [N, D] 0/1 pixels: pixel > threshold on the byte scale (the rule ``fit`` applies)."""
    return datasets.binarize(datasets.flatten(images) if images.dim() == 3 else images, threshold)


def epoch_printer(ctx: Context, offset: int = 0, total: Optional[int] = None):
    """A ``fit`` callback that prints one line per epoch (tqdm.write keeps the bar intact)."""
    from tqdm.auto import tqdm

    def cb(event, info):
        if event != "epoch":
            return
        e = info["epoch"] + 1 + offset
        test = info["test_elbo"]
        line = (f"epoch {e:3d}{'' if total is None else '/' + str(total)}  train ELBO {info['train_elbo']:9.3f}  "
                f"test ELBO {test:9.3f}  {info['seconds']:6.1f} s" if not math.isnan(test) else
                f"epoch {e:3d}{'' if total is None else '/' + str(total)}  train ELBO {info['train_elbo']:9.3f}  "
                f"{info['seconds']:6.1f} s")
        if ctx.progress:
            tqdm.write(line)
        else:
            ctx.log(line)
    return cb


def _run_identity(ctx: Context, n_train: int) -> dict:
    ident = {"name": ctx.name, "seed": ctx.seed, "limit": ctx.limit, "n_train": int(n_train),
             "train": ctx.train_settings()}
    if ctx.preset.init:  # a checkpoint initialized otherwise is another run
        ident["init"] = dict(ctx.preset.init)
    return ident


def new_model(ctx: Context, images: torch.Tensor) -> VAE:
    """The preset's VAE, initialized as its ``init`` says (:class:`fastvae.presets.Preset`): Glorot weights
    from a generator seeded with the run's seed, the output bias from the training ``images`` (binarized by the
    preset's threshold, or their mean intensities under dynamic binarization)."""
    model = VAE.from_preset(ctx.name)
    init = ctx.preset.init
    if set(init) - {"weights", "output_bias"} or init.get("weights", "glorot") != "glorot":
        raise ValueError(f"preset {ctx.name!r}: init may hold weights='glorot' and output_bias, got {init}")
    if init.get("weights") == "glorot":
        model.glorot_init_(torch.Generator().manual_seed(ctx.seed))
    if init.get("output_bias"):
        model.init_output_bias_(images, threshold=ctx.preset.data.get("threshold"))
    return model


def resume_point(ctx: Context, n_train: int):
    """With ``--resume``, the model saved in out/checkpoint.pt (None if there is none yet); without it,
    None, after recording this run's identity in out/run.json. Raises ValueError if the checkpoint
    belongs to a run with another homework, seed, limit, data size or settings (epochs may grow)."""
    ident = _run_identity(ctx, n_train)
    if ctx.resume and ctx.checkpoint.exists():
        try:
            old = read_json(ctx.out / RUN)
        except (OSError, ValueError):
            raise ValueError(f"{ctx.out / RUN} is missing or unreadable; cannot check that "
                             f"{ctx.checkpoint} belongs to this run") from None
        a = {k: v for k, v in _plain(old).items() if k != "train"}
        b = {k: v for k, v in _plain(ident).items() if k != "train"}
        ta = {k: v for k, v in _plain(old.get("train", {})).items() if k != "epochs"}
        tb = {k: v for k, v in _plain(ident["train"]).items() if k != "epochs"}
        if a != b or ta != tb:
            raise ValueError(f"--resume: {ctx.checkpoint} comes from another run ({old}); this run is {ident}")
        model = VAE.load(ctx.checkpoint)
        ctx.log(f"resuming from {ctx.checkpoint} after {len(model.history_.train_elbo)} epochs")
        return model
    write_json(ctx.out / RUN, ident)
    return None


def train(ctx: Context, model, images, labels=None, *, epochs: int, **kwargs):
    """``model.fit`` with ``ctx.train_options()`` (``kwargs`` go to fit) for ``epochs`` epochs from
    ``ctx.seed``, writing out/checkpoint.pt after every epoch;
    with ``--resume`` and a checkpoint, the saved model trains the remaining epochs instead (bit-exactly the
    run it continues). Returns (model, model.history_) with the whole run's history."""
    saved = resume_point(ctx, len(images))
    done = 0
    if saved is not None:
        model, done = saved, len(saved.history_.train_elbo)
    model.fit(images, ctx.train_options(), train_labels=labels, epochs=max(0, epochs - done),
              seed=None if saved is not None else ctx.seed,
              checkpoint=ctx.checkpoint, progress=ctx.progress,
              callback=epoch_printer(ctx, offset=done, total=epochs), **kwargs)
    return model, model.history_


def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.ndarray, torch.Tensor)):
        return _plain(np.asarray(v).tolist())
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)  # JSON has no NaN
    if isinstance(v, np.integer):
        return int(v)
    return v


def read_json(path: Path):
    """The JSON document at ``path``, a regular file: a FIFO, a device or a folder there is refused (ValueError,
    IsADirectoryError) before anything reads it, never blocking."""
    with _checks.open_regular("fastvae.reproduce", path) as f:
        return json.loads(f.read().decode("utf-8"))


def write_json(path: Path, obj: dict) -> None:
    """Atomic JSON write (temp file + os.replace); NaN/inf become null."""
    data = json.dumps(_plain(obj), indent=1).encode()
    atomic_write(path, lambda f: f.write(data))


def save_model(path: Path, model) -> None:
    """The model's state_dict via torch.save, written atomically."""
    atomic_write(path, lambda f: torch.save(model.state_dict(), f))


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


def base_metrics(ctx: Context, model, train: dict, data: dict, history) -> dict:
    """Fields every metrics.json has: settings, the homework's numbers and the curves."""
    return {
        "preset": ctx.name,
        "settings": {"model": dict(ctx.preset.model), "init": dict(ctx.preset.init), "train": train, "data": data,
                     "seed": ctx.seed, "limit": ctx.limit, "torch_threads": torch.get_num_threads()},
        "reported": dict(ctx.preset.reported),
        "train_elbo": history.train_elbo,
        "test_elbo": history.test_elbo,
        "epoch_seconds": history.epoch_seconds,
        "update_rec": history.update_rec,
        "update_kl": history.update_kl,
    }
