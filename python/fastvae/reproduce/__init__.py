"""Reproductions of the four homeworks (``python -m fastvae reproduce NAME --out DIR``).

One module per homework; each ``run(ctx)`` trains the homework's VAE with its settings, saves the
figures the homework asks for under ``ctx.out`` and returns the metrics that :func:`reproduce`
writes to ``metrics.json``. See docs/reproductions.md.
"""
import importlib
import math
from pathlib import Path
from typing import Optional

from .common import Context, Timer, write_json

NAMES = ("stats305c", "ese546", "cvae_hw7", "dd2434")
KL_WEIGHT_NAMES = ("cvae_hw7",)  # the reproductions whose training objective takes a KL weight


def reproduce(name: str, out, *, data=None, epochs: Optional[int] = None, seed: int = 0, progress: bool = True,
              limit: Optional[int] = None, log=print, kl_weight: Optional[float] = None) -> dict:
    """Run the reproduction ``name`` and write ``out/metrics.json``; returns the metrics.

    kl_weight: overrides the preset's KL weight beta (objective rec - beta * kl; only for cvae_hw7).

    Raises:
        ValueError: unknown name, epochs < 1, limit < 1, kl_weight negative, not finite or given for
        a homework trained on the plain ELBO. FileNotFoundError: ``data`` is not a folder
        or lacks the MNIST files.
    """
    if name not in NAMES:
        raise ValueError(f"unknown homework {name!r}; choose one of {', '.join(NAMES)}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if kl_weight is not None:
        if name not in KL_WEIGHT_NAMES:
            raise ValueError(f"kl_weight applies only to {', '.join(KL_WEIGHT_NAMES)}, not {name}")
        if not (math.isfinite(kl_weight) and kl_weight >= 0):
            raise ValueError(f"kl_weight must be finite and >= 0, got {kl_weight}")
    if data is not None:
        data = Path(data)
        if not data.is_dir():
            raise FileNotFoundError(f"data folder {data} does not exist")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(name, out, data, epochs, seed, progress, limit, log, kl_weight=kl_weight)
    timer = Timer()
    metrics = importlib.import_module(f".{name}", __name__).run(ctx)
    metrics["wall_seconds"] = timer()
    metrics["figures"] = ctx.figures
    write_json(out / "metrics.json", metrics)
    return metrics
