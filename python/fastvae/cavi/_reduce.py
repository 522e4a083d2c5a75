"""Sums over the ranks of a torch.distributed process group, for CAVI fitted on shards of a catalogue.

Each rank holds a contiguous shard of the events (rank 0 the first rows); CAVI needs only sums over
events (the E-step's [K, 5] statistics, the entropy of q(Z), N, sum S, sum log S!), so one all_reduce of
one float64 buffer per iteration gives every rank the single-process q and ELBO.
"""
import numpy as np
import torch

from ..distributed import resolve_group  # noqa: F401  (the one rule for process_group='auto')


class Reducer:
    """all_reduce over ``group`` (or nothing for None); float64 CPU tensors, reduced in place."""

    def __init__(self, group):
        self.group = group
        dist = torch.distributed
        self.rank = 0 if group is None else dist.get_rank(group)
        self.world = 1 if group is None else dist.get_world_size(group)

    def sum(self, t):
        if self.group is not None:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM, group=self.group)
        return t

    def max(self, t):
        if self.group is not None:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=self.group)
        return t

    def offsets(self, n_local):
        """Every rank's first global row and the global N (shards in rank order)."""
        counts = torch.zeros(self.world, dtype=torch.float64)
        counts[self.rank] = n_local
        counts = self.sum(counts).to(torch.int64).numpy()
        return int(counts[: self.rank].sum()), int(counts.sum())

    def agree(self, error):
        """Raise on every rank if any rank had an error (the failing rank re-raises its own), so that no
        rank waits in a later collective for a rank that has given up."""
        flag = self.max(torch.tensor([0.0 if error is None else float(self.rank + 1)], dtype=torch.float64))
        if error is not None:
            raise error
        if flag.item() > 0:
            raise ValueError(f"EarthquakeMixture.fit: rank {int(flag.item()) - 1} of the process group could not "
                             f"read its events (see that rank's error); no rank fits")

    def seed(self, random_state):
        """random_state=None on several ranks: rank 0 draws the seed and sends it, so all ranks agree."""
        if self.group is None or random_state is not None:
            return random_state
        s = torch.tensor([float(np.random.default_rng().integers(2 ** 52)) if self.rank == 0 else 0.0],
                         dtype=torch.float64)
        return int(self.sum(s).item())

    def gather_rows(self, take, index, offset, n_local):
        """Rows ``index`` (global, any order) of the sharded X: each rank fills the ones it holds, the sum
        over ranks (x + 0 is exact) gives all of them to every rank."""
        index = np.asarray(index, dtype=np.int64)
        out = np.zeros((len(index), 2))
        mine = (index >= offset) & (index < offset + n_local)
        if mine.any():
            out[mine] = take(index[mine] - offset)
        if self.group is None:
            return out
        return self.sum(torch.from_numpy(out)).numpy()
