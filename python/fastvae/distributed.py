"""Data-parallel training on torch.distributed (gloo on CPUs; launch with ``torchrun``; docs/scaling.md).

Every rank holds the whole training set and the same generator, so all ranks shuffle and draw the noise of
each global minibatch exactly as one process would; each trains on its contiguous share of the batch's rows,
the gradients (and the batch's rec / kl sums) are summed with one all_reduce of one flat buffer per update,
and every rank takes the same Adam step. Parameters, optimizer state and generator start from rank 0's.
"""
from typing import Optional

import torch

from . import _checks


def resolve_group(where: str, process_group):
    """``"auto"``: the default group when torch.distributed is initialised (with more than one rank), else
    None; None: one process; or a ProcessGroup as given."""
    dist = torch.distributed
    if isinstance(process_group, str):
        if process_group != "auto":
            raise ValueError(f"{where}: process_group must be 'auto', None or a torch.distributed ProcessGroup, "
                             f"got {process_group!r}")
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return None
        return dist.group.WORLD
    if process_group is None:
        return None
    if not (dist.is_available() and isinstance(process_group, dist.ProcessGroup)):
        raise TypeError(f"{where}: process_group must be 'auto', None or a torch.distributed ProcessGroup, got "
                        f"{_checks._show(process_group)}")
    return process_group


class DataParallel:
    """The collectives of one data-parallel fit over ``group`` (None: a single process, no collectives)."""

    def __init__(self, group):
        dist = torch.distributed
        self.group = group
        self.rank = 0 if group is None else dist.get_rank(group)
        self.world = 1 if group is None else dist.get_world_size(group)
        self._src = 0 if group is None else dist.get_global_rank(group, 0)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that draws the progress bar and writes checkpoints."""
        return self.rank == 0

    def all_reduce(self, flat: torch.Tensor) -> None:
        """Sum ``flat`` over the ranks in place (called by the C++ loop once per update)."""
        torch.distributed.all_reduce(flat, group=self.group)

    def loop_args(self) -> dict:
        return dict(all_reduce=None if self.group is None else self.all_reduce, rank=self.rank, world=self.world)

    def broadcast_(self, tensors) -> None:
        """Overwrite ``tensors`` on every rank with rank 0's (parameters, Adam state, generator state)."""
        if self.group is None:
            return
        with torch.no_grad():
            for t in tensors:
                torch.distributed.broadcast(t, src=self._src, group=self.group)

    def barrier(self) -> None:
        if self.group is not None:
            torch.distributed.barrier(group=self.group)


def rank_zero(group: Optional[object] = "auto") -> bool:
    """True on rank 0 of ``group`` (or when not distributed): where results, figures and prints belong."""
    g = resolve_group("fastvae.distributed.rank_zero", group)
    return g is None or torch.distributed.get_rank(g) == 0
