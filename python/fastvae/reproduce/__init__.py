"""Reproductions of the four homeworks (``python -m fastvae reproduce NAME --out DIR``).

One module per homework; each ``run(ctx)`` trains the homework's VAE with its settings, saves the
figures the homework asks for under ``ctx.out`` and returns the metrics that :func:`reproduce`
writes to ``metrics.json``. See docs/reproductions.md.
"""
import importlib
from pathlib import Path
from typing import Optional

from .common import Context, Timer, write_json

NAMES = ("stats305c", "ese546", "cvae_hw7", "dd2434")


def reproduce(name: str, out, *, data=None, epochs: Optional[int] = None, seed: int = 0, progress: bool = True,
              limit: Optional[int] = None, log=print) -> dict:
    """Run the reproduction ``name`` and write ``out/metrics.json``; returns the metrics.

    Raises:
        ValueError: unknown name, epochs < 1 or limit < 1. FileNotFoundError: ``data`` is not a folder
        or lacks the MNIST files.
    """
    if name not in NAMES:
        raise ValueError(f"unknown homework {name!r}; choose one of {', '.join(NAMES)}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if data is not None:
        data = Path(data)
        if not data.is_dir():
            raise FileNotFoundError(f"data folder {data} does not exist")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(name, out, data, epochs, seed, progress, limit, log)
    timer = Timer()
    metrics = importlib.import_module(f".{name}", __name__).run(ctx)
    metrics["wall_seconds"] = timer()
    metrics["figures"] = ctx.figures
    write_json(out / "metrics.json", metrics)
    return metrics
