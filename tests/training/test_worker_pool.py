"""The engine's thread pool (cpp/cpu/worker_pool.h): every index of a range is visited once whichever threads
claim its chunks, calls nested in a chunk run inline, a chunk's error reaches the caller and leaves the pool
usable, concurrent callers and a forked child get their ranges done, and the trainer's updates run on it."""
import multiprocessing
import threading

import pytest
import torch

import fastvae
from fastvae import _C

# (n, grain, threads): empty and one-element ranges, ranges shorter than a grain, uneven chunks, more threads
# than the machine has cores.
RANGES = [(0, 1, 2), (1, 1, 2), (10, 1, 2), (5, 10, 2), (1000, 7, 2), (100_000, 1000, 3), (64, 1, 4), (333, 1, 1)]


@pytest.mark.parametrize("n,grain,threads", RANGES)
def test_every_index_is_visited_once(n, grain, threads):
    for _ in range(20):  # the claims race differently each time
        visits, ran, nested_inline = _C._pool_cover(n, grain, threads)
        assert visits.shape == (n,) and bool((visits == 1).all())
        assert 0 <= ran <= min(threads, max(1, -(-n // grain))) and (ran >= 1 or n == 0)
        assert nested_inline


def test_a_chunk_error_reaches_the_caller_and_the_pool_stays_usable():
    with pytest.raises(RuntimeError, match="chunk failed at 500"):
        _C._pool_cover(1000, 10, 2, throw_at=500)
    visits, _, _ = _C._pool_cover(1000, 10, 2)
    assert bool((visits == 1).all())


def test_workers_are_started_once_and_reused():
    _C._pool_cover(10_000, 10, 3)
    workers, _ = _C._pool_stats()
    for _ in range(50):
        _C._pool_cover(10_000, 10, 3)
    assert _C._pool_stats()[0] == workers >= 2


def test_concurrent_callers_each_get_their_range_done():
    results, errors = [], []

    def call():
        try:
            for _ in range(50):
                results.append(bool((_C._pool_cover(20_000, 100, 2)[0] == 1).all()))
        except Exception as e:  # reported below, on the test's thread
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 150 and all(results)


def _child(queue):
    # numpy, not torch, checks the visits: libgomp's teams do not survive a fork (torch's own ops can hang in a
    # child whose parent ran them on several threads), which is why the pool must not depend on them.
    ok, workers_helped = True, False
    for _ in range(50):
        visits, ran, _ = _C._pool_cover(1_000_000, 1000, 2)
        ok = ok and bool((visits.numpy() == 1).all())
        workers_helped = workers_helped or ran == 2
    queue.put((ok, workers_helped))


def test_a_forked_child_starts_its_own_workers():
    _C._pool_cover(50_000, 100, 3)  # the parent's workers exist before the fork
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0 and queue.get(timeout=5) == (True, True)


def test_the_trainers_updates_run_on_the_pool():
    x = torch.randint(0, 256, (200, 784), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    model = fastvae.VAE(latent_dim=20, encoder_hidden=(256,), decoder_hidden=(256,))
    before = _C._pool_stats()[1]
    model.fit(x, epochs=1, batch_size=100, threads=2, progress=False)
    assert _C._pool_stats()[1] > before
