"""Distributed CAVI: real 2-rank gloo groups on 127.0.0.1 fit shards of one catalogue and must give the
single-process fit on all of it; a rank with bad events or a rank that dies makes the other raise, not hang."""
import datetime
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastvae.cavi import ConvergenceWarning, EarthquakeMixture, sample_earthquakes

PARAMS = dict(max_iter=30, tol=0.0, n_init=2, random_state=5)
FITTED = ("means_", "mean_precisions_", "rate_shape_", "rate_rate_", "elbo_trace_")


def _catalogue(n, k):
    X, S, *_ = sample_earthquakes(n, k, rho=0.05, alpha=20.0, beta=0.5, random_state=7)
    return X, S


def _shard(n, rank, world):
    return rank * n // world, (rank + 1) * n // world


def _worker(rank, world, init_file, out_dir, case, n, k, chunk_size):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=30))
    try:
        X, S = _catalogue(n, k)
        a, b = _shard(n, rank, world)
        X, S = X[a:b], S[a:b].astype(np.float64)
        if case == "bad" and rank == 1:
            X = X.copy()
            X[3, 0] = np.nan
        if case == "dies" and rank == 1:
            from fastvae.cavi import _ops
            estep = _ops.estep
            calls = []

            def dying_estep(*args):
                calls.append(1)
                if len(calls) == 3:
                    os._exit(3)  # the rank vanishes mid-fit, as a killed process would
                return estep(*args)
            _ops.estep = dying_estep
        est = EarthquakeMixture(k, **PARAMS)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est.fit(X, S, chunk_size=chunk_size)
        except Exception as e:
            with open(os.path.join(out_dir, f"rank{rank}.err"), "w") as f:
                f.write(f"{type(e).__name__}: {e}")
            raise
        with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
            pickle.dump({a: getattr(est, a) for a in FITTED}, f)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _launch(tmp_path, case, n=30000, k=5, chunk_size=None):
    """Run both ranks to their end (no rank is killed for another's failure); return the exit codes."""
    ctx = mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path), case, n, k, chunk_size),
                             nprocs=2, join=False, start_method="spawn")
    for p in ctx.processes:
        p.join(timeout=90)
    alive = [p.is_alive() for p in ctx.processes]
    for p in ctx.processes:
        p.kill()
    assert not any(alive), "a rank hung"
    return [p.exitcode for p in ctx.processes]


def _error(tmp_path, rank):
    path = tmp_path / f"rank{rank}.err"
    return path.read_text() if path.exists() else ""


def _single(n, k):
    X, S = _catalogue(n, k)
    est = EarthquakeMixture(k, **PARAMS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, S, process_group=None)
    return est


@pytest.mark.parametrize("chunk_size", [None, 4096])
def test_two_ranks_equal_one_process(tmp_path, chunk_size):
    # N > 20000: the k-means++ seeds come from a subsample gathered across the ranks
    assert _launch(tmp_path, "ok", chunk_size=chunk_size) == [0, 0], (_error(tmp_path, 0), _error(tmp_path, 1))
    ref = _single(30000, 5)
    for rank in (0, 1):
        with open(tmp_path / f"rank{rank}.pkl", "rb") as f:
            got = pickle.load(f)
        for name in FITTED:
            np.testing.assert_allclose(got[name], getattr(ref, name), rtol=1e-12, atol=0, err_msg=name)


def test_bad_events_on_one_rank_stop_every_rank(tmp_path):
    assert _launch(tmp_path, "bad") == [1, 1]
    assert "ValueError: EarthquakeMixture.fit: rank 1 of the process group could not read its events" in _error(tmp_path, 0)
    assert "ValueError: EarthquakeMixture: X contains NaN or inf" in _error(tmp_path, 1)
    assert not list(tmp_path.glob("rank*.pkl"))


def test_a_rank_that_dies_makes_the_other_raise(tmp_path):
    assert _launch(tmp_path, "dies") == [1, 3]  # rank 0 raised (from gloo), rank 1 vanished
    assert "RuntimeError" in _error(tmp_path, 0) or "DistBackendError" in _error(tmp_path, 0)
    assert not list(tmp_path.glob("rank*.pkl"))


def test_process_group_argument_is_checked():
    X, S = _catalogue(100, 2)
    with pytest.raises(ValueError, match="process_group must be 'auto', None or a torch.distributed"):
        EarthquakeMixture(2).fit(X, S, process_group="world")
    with pytest.raises(TypeError, match="process_group must be 'auto', None or a torch.distributed"):
        EarthquakeMixture(2).fit(X, S, process_group=3)
