"""Reproductions of the four homeworks and of the IWAE paper's MNIST table (``python -m fastvae reproduce NAME --out DIR``).

One module per homework; each ``run(ctx)`` trains the homework's VAE with its settings, saves the
figures the homework asks for under ``ctx.out`` and returns the metrics that :func:`reproduce`
writes to ``metrics.json``. See docs/reproductions.md.
"""
import importlib
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

from .. import _checks
from ..arch import OBJECTIVES
from .common import Context, Timer, write_json

NAMES = ("stats305c", "ese546", "cvae_hw7", "dd2434", "iwae_paper", "iwae_paper_2layer", "jang_categorical")
KL_WEIGHT_NAMES = ("cvae_hw7",)  # the reproductions whose training objective takes a KL weight
OBJECTIVE_NAMES = ("iwae_paper", "iwae_paper_2layer")  # the reproductions that train any objective with k samples


def _out_folder(where: str, out) -> Path:
    """``out`` as a Path if it can name an output folder: a str or os.PathLike, not empty or blank (``Path("")``
    is the working directory), no NUL byte, not an existing file."""
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"{where}: out must be a folder path (str or os.PathLike), got {_checks._show(out)}")
    text = os.fspath(out)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: out must name a folder, got {text!r} (for the working directory say '.')")
    if "\0" in text:
        raise ValueError(f"{where}: out must be a folder path, got {text!r} with a NUL byte")
    path = Path(text)
    if os.path.lexists(path) and not path.is_dir():
        raise ValueError(f"{where}: out must be a folder, got the existing file {text!r}")
    return path


def _make_folder(where: str, out: Path) -> None:
    """Create ``out`` (and its parents) and check that files can be created in it, before any training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a parent that is a file, no permission, a read-only file system ...
        raise ValueError(f"{where}: out must be a folder that can be created, got {str(out)!r} "
                         f"({e.strerror or e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"{where}: out must be a folder this process can write to, got {str(out)!r}")


def reproduce(name: str, out, *, data=None, epochs: Optional[int] = None, seed: int = 0, progress: bool = True,
              limit: Optional[int] = None, log=print, kl_weight: Optional[float] = None, resume: bool = False,
              objective: Optional[str] = None, k: Optional[int] = None, groups: Optional[int] = None,
              ciwae_beta: Optional[float] = None) -> dict:
    """Run the reproduction ``name`` and write ``out/metrics.json``; returns the metrics.

    Training writes ``out/checkpoint.pt`` after every epoch (with ``out/run.json``, the run's identity);
    ``resume=True`` continues from it for the remaining epochs, and the metrics and figures equal those of
    an uninterrupted run with the same seed (timings aside). Without a checkpoint, resume starts afresh.

    kl_weight: overrides the preset's KL weight beta (objective rec - beta * kl; only for cvae_hw7).
    objective, k, groups, ciwae_beta: override the training objective (one of ``fastvae.arch.OBJECTIVES``:
    ``"iwae"``, the IWAE bound with k samples; ``"elbo"``, the ELBO averaged over k Monte Carlo samples, Burda et
    al.'s "VAE" rows; ``"miwae"`` / ``"piwae"`` with M = groups groups of k samples and ``"ciwae"`` with beta =
    ciwae_beta, Rainforth et al. 2018), k, groups and ciwae_beta (iwae_paper and iwae_paper_2layer only; the
    option rules of :class:`fastvae.TrainOptions` apply).

    Under torch.distributed (e.g. ``torchrun --nproc-per-node=2 -m fastvae reproduce ...``), every rank trains
    data-parallel (:func:`fastvae.fit`); rank 0 alone prints and writes ``out``, the other ranks
    compute the same evaluations into a scratch folder that is removed at the end.

    Raises:
        TypeError: a float or string where an integer is meant (epochs, seed, limit); ``out`` not a path.
        ValueError: unknown name, objective, k, groups or ciwae_beta given for a reproduction other than
        iwae_paper and iwae_paper_2layer, groups without "miwae" / "piwae" or ciwae_beta without "ciwae", epochs < 1,
        limit < 1, seed outside [0, 2**63), kl_weight negative, not finite or given for a homework trained on the
        plain ELBO, resume under torch.distributed, ``out`` empty or blank, naming a file, or a folder that cannot
        be created or written to (checked before training), a checkpoint from another run.
        FileNotFoundError: ``data`` is not a folder or lacks the MNIST files.
    """
    where = "fastvae.reproduce"
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"unknown reproduction {name!r}; choose one of {', '.join(NAMES)}")
    if epochs is not None:
        epochs = _checks.integer(where, "epochs", epochs, min=1)
    if limit is not None:
        limit = _checks.integer(where, "limit", limit, min=1)
    seed = _checks.integer(where, "seed", seed, min=0, max=2**63 - 1)  # cvae_hw7 seeds epoch e with seed + e
    _checks.flag(where, "resume", resume)
    if kl_weight is not None:
        if name not in KL_WEIGHT_NAMES:
            raise ValueError(f"kl_weight applies only to {', '.join(KL_WEIGHT_NAMES)}, not {name}")
        kl_weight = _checks.real(where, "kl_weight", kl_weight, min=0.0)
    if any(v is not None for v in (objective, k, groups, ciwae_beta)) and name not in OBJECTIVE_NAMES:
        raise ValueError(f"objective, k, groups and ciwae_beta apply only to {', '.join(OBJECTIVE_NAMES)}, not {name}")
    if objective is not None:
        objective = _checks.choice(where, "objective", objective, OBJECTIVES)
    if k is not None:
        k = _checks.integer(where, "k", k, min=1)
    if groups is not None:
        groups = _checks.integer(where, "groups", groups, min=1)
    if ciwae_beta is not None:
        ciwae_beta = _checks.real(where, "ciwae_beta", ciwae_beta, min=0.0, max=1.0)
    # the option rules (groups without MIWAE or PIWAE, say) before any folder is made
    Context(name, Path("."), epochs=epochs, kl_weight=kl_weight, objective=objective, k=k, groups=groups,
            ciwae_beta=ciwae_beta).train_options()
    if data is not None:
        data = Path(data)
        if not data.is_dir():
            raise FileNotFoundError(f"data folder {data} does not exist")
    out = _out_folder(where, out)
    from ..distributed import resolve_group
    group = resolve_group(where, "auto")
    if group is not None and resume:
        raise ValueError(f"{where}: resume is not supported under torch.distributed yet; resume in one process")
    scratch = None
    if group is not None and torch.distributed.get_rank(group) != 0:  # rank 0 alone prints and writes out
        scratch = tempfile.TemporaryDirectory(prefix="fastvae-rank-")
        out, progress, log = Path(scratch.name), False, (lambda line: None)
    try:
        _make_folder(where, out)
        ctx = Context(name, out, data, epochs, seed, progress, limit, log, kl_weight=kl_weight, resume=resume,
                      objective=objective, k=k, groups=groups, ciwae_beta=ciwae_beta)
        timer = Timer()
        metrics = importlib.import_module(f".{name}", __name__).run(ctx)
        metrics["wall_seconds"] = timer()
        metrics["figures"] = ctx.figures
        if group is not None:
            metrics["world_size"] = torch.distributed.get_world_size(group)
        write_json(out / "metrics.json", metrics)
    finally:
        if scratch is not None:
            scratch.cleanup()
    return metrics
