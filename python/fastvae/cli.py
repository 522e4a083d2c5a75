"""Command line: ``fastvae reproduce NAME --out DIR`` (also ``python -m fastvae ...``)."""
import argparse
import os
import sys
from typing import Optional, Sequence

from ._version import __version__
from .arch import OBJECTIVES
from .datasets import DataFileError
from .distributed import rank_zero
from .reproduce import NAMES, reproduce


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastvae", description="fastvae command line")
    p.add_argument("--version", action="version", version=f"fastvae {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("reproduce", help="train a homework's VAE and write its metrics and figures",
                       description="Train a homework's VAE with its settings; write DIR/metrics.json, "
                                   "DIR/model.pt and the homework's figures as PNG files.")
    r.add_argument("name", choices=NAMES, help="which homework (or iwae_paper: Burda et al. 2016, Table 1)")
    r.add_argument("--out", required=True, help="output folder (created if missing)")
    r.add_argument("--epochs", type=int, default=None, help="override the homework's number of epochs")
    r.add_argument("--data", default=None,
                   help="folder with the MNIST IDX files (default: $FASTVAE_DATA or the download cache)")
    r.add_argument("--kl-weight", type=float, default=None,
                   help="override the KL weight beta of the training objective (cvae_hw7 only)")
    r.add_argument("--objective", choices=OBJECTIVES, default=None,
                   help="training objective: the IWAE bound with K samples, the ELBO averaged over K samples, "
                        "MIWAE or PIWAE with --groups M groups of K, CIWAE with --ciwae-beta "
                        "(iwae_paper[_2layer] only; default: iwae)")
    r.add_argument("--k", type=int, default=None,
                   help="samples per image (per group for miwae and piwae) of the objective "
                        "(iwae_paper[_2layer] only; default 1)")
    r.add_argument("--groups", type=int, default=None, help="M of MIWAE(M, K) and PIWAE(M, K) (default 1)")
    r.add_argument("--ciwae-beta", type=float, default=None, help="beta of CIWAE, in [0, 1] (default 0.5)")
    r.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and noise")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--resume", action="store_true",
                   help="continue from DIR/checkpoint.pt (written after every epoch) for the remaining epochs")
    r.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)  # small runs for tests
    return p


def _init_distributed() -> bool:
    """Under torchrun (WORLD_SIZE > 1 in the environment), join the process group (gloo: the C++ loop trains
    on the CPU). Returns True if this call created the group."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    dist.init_process_group("gloo")
    return True


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    joined = _init_distributed()
    try:
        return _run(args)
    finally:
        if joined:
            import torch.distributed as dist
            dist.destroy_process_group()


def _run(args) -> int:
    try:
        m = reproduce(args.name, args.out, data=args.data, epochs=args.epochs, seed=args.seed,
                      progress=not args.no_progress, limit=args.limit, kl_weight=args.kl_weight,
                      resume=args.resume, objective=args.objective, k=args.k, groups=args.groups,
                      ciwae_beta=args.ciwae_beta)
    except (FileNotFoundError, DataFileError, ValueError, TypeError, FloatingPointError) as e:
        print(f"fastvae: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fastvae: interrupted; {args.out}/checkpoint.pt holds the last completed epoch "
              "(continue with --resume)", file=sys.stderr)
        return 130
    if rank_zero():
        print(f"wrote {args.out}/metrics.json and {len(m['figures'])} figures in {m['wall_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
