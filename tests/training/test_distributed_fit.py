"""Data-parallel fit: real 2-rank gloo groups on 127.0.0.1 train on shares of every global minibatch and must
match one process with the same global batch and seed; a failing rank makes the other raise, not hang; only
rank 0 writes the checkpoint; the torchrun command line writes its results once."""
import datetime
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fastvae

CASES = {
    "elbo_mc": dict(model=dict(), fit=dict(n_samples=3, estimator="mc", pixels="dynamic")),
    "iwae_dreg": dict(model=dict(), fit=dict(objective="iwae", k=4, iwae_estimator="dreg", pixels="dynamic")),
    "categorical": dict(model=dict(latent="categorical", latent_dim=3, categories=4), fit=dict(hard=True)),
    "gaussian_predicted": dict(model=dict(likelihood="gaussian", gaussian_scale="predicted"),
                               fit=dict(pixels="intensity", lr=1e-4)),
}


def _data():
    g = torch.Generator().manual_seed(0)
    return (torch.rand(210, 64, generator=g) * 255).to(torch.uint8)  # 210 = 10 batches of 20 and one of 10


def _model(case, seed=1):
    torch.manual_seed(seed)
    kw = dict(data_dim=64, latent_dim=4, encoder_hidden=(32,), decoder_hidden=(32,), activation="tanh")
    return fastvae.VAE(**dict(kw, **CASES[case]["model"]))


def _fit(model, case, **kw):
    return model.fit(_data(), batch_size=20, epochs=1, seed=7, progress=False, **CASES[case]["fit"], **kw)


def _worker(rank, world, init_file, out_dir, case, fail):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=30))
    try:
        if fail and rank == 1:
            raise RuntimeError("rank 1 gives up before training")
        model = _model(case, seed=1 if rank == 0 else 99)  # rank 1's own weights: fit starts from rank 0's
        hist = _fit(model, case, checkpoint=Path(out_dir) / f"rank{rank}.pt")
        with open(Path(out_dir) / f"rank{rank}.pkl", "wb") as f:
            pickle.dump(dict(params=[p.detach().clone() for p in model.flat_parameters()],
                             rec=hist.update_rec, kl=hist.update_kl), f)
    except Exception as e:
        (Path(out_dir) / f"rank{rank}.err").write_text(f"{type(e).__name__}: {e}")
        raise
    finally:
        dist.destroy_process_group()


def _network_model(seed):
    torch.manual_seed(seed)
    enc = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))
    dec = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 64))
    return fastvae.VAE.from_networks(enc, dec, 4)


NETWORK_FIT = dict(batch_size=20, epochs=1, seed=7, progress=False, pixels="dynamic", n_samples=2, estimator="stl")


def _network_worker(rank, world, init_file, out_dir, case, fail):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=30))
    try:
        model = _network_model(seed=1 if rank == 0 else 99)  # rank 1's own weights: fit starts from rank 0's
        kw = dict(objective="iwae", k=3, iwae_estimator="dreg") if case == "network_iwae" else {}
        hist = model.fit(_data(), checkpoint=Path(out_dir) / f"rank{rank}.pt", **NETWORK_FIT, **kw)
        with open(Path(out_dir) / f"rank{rank}.pkl", "wb") as f:
            pickle.dump(dict(params=[p.detach().clone() for p in model.parameters()], rec=hist.update_rec,
                             kl=hist.update_kl), f)
    except Exception as e:
        (Path(out_dir) / f"rank{rank}.err").write_text(f"{type(e).__name__}: {e}")
        raise
    finally:
        dist.destroy_process_group()


def _launch(tmp_path, case, fail=False):
    worker = _network_worker if case.startswith("network") else _worker
    ctx = mp.start_processes(worker, args=(2, str(tmp_path / "init"), str(tmp_path), case, fail), nprocs=2,
                             join=False, start_method="spawn")
    for p in ctx.processes:
        p.join(timeout=90)
    alive = [p.is_alive() for p in ctx.processes]
    for p in ctx.processes:
        p.kill()
    assert not any(alive), "a rank hung"
    return [p.exitcode for p in ctx.processes]


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_ranks_equal_one_process(tmp_path, case):
    codes = _launch(tmp_path, case)
    errors = [(tmp_path / f"rank{r}.err").read_text() for r in (0, 1) if (tmp_path / f"rank{r}.err").exists()]
    assert codes == [0, 0], errors
    ref = _model(case)
    ref_hist = _fit(ref, case, process_group=None)
    for rank in (0, 1):
        with open(tmp_path / f"rank{rank}.pkl", "rb") as f:
            got = pickle.load(f)
        # 11 updates: the sums over the batch differ only in order, so the parameters agree to rounding
        for p, q in zip(got["params"], ref.flat_parameters()):
            torch.testing.assert_close(p, q.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.as_tensor(got["rec"]), torch.as_tensor(ref_hist.update_rec), rtol=1e-5,
                                   atol=1e-4)
        torch.testing.assert_close(torch.as_tensor(got["kl"]), torch.as_tensor(ref_hist.update_kl), rtol=1e-5,
                                   atol=1e-4)
    assert (tmp_path / "rank0.pt").exists() and not (tmp_path / "rank1.pt").exists()  # rank 0 alone writes


@pytest.mark.parametrize("case", ["network_elbo", "network_iwae"])
def test_custom_networks_two_ranks_equal_one_process(tmp_path, case):
    codes = _launch(tmp_path, case)
    errors = [(tmp_path / f"rank{r}.err").read_text() for r in (0, 1) if (tmp_path / f"rank{r}.err").exists()]
    assert codes == [0, 0], errors
    ref = _network_model(seed=1)
    kw = dict(objective="iwae", k=3, iwae_estimator="dreg") if case == "network_iwae" else {}
    ref_hist = ref.fit(_data(), process_group=None, **NETWORK_FIT, **kw)
    for rank in (0, 1):
        with open(tmp_path / f"rank{rank}.pkl", "rb") as f:
            got = pickle.load(f)
        for p, q in zip(got["params"], ref.parameters()):
            torch.testing.assert_close(p, q.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.as_tensor(got["rec"]), torch.as_tensor(ref_hist.update_rec), rtol=1e-5,
                                   atol=1e-4)
    assert (tmp_path / "rank0.pt").exists() and not (tmp_path / "rank1.pt").exists()


def test_a_failing_rank_makes_the_other_raise(tmp_path):
    codes = _launch(tmp_path, "elbo_mc", fail=True)
    assert codes == [1, 1]
    assert (tmp_path / "rank0.err").exists()  # rank 0 raised (a torch.distributed error), it did not hang
    assert not list(tmp_path.glob("rank*.pkl"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_command_line_writes_once(tmp_path, need_mnist):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
           f"--master-port={_free_port()}", "-m", "fastvae", "reproduce", "stats305c", "--out", str(out),
           "--epochs", "1", "--limit", "400", "--data", str(need_mnist), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("wrote ") == 1 and res.stdout.count("epoch   1/1") == 1, res.stdout
    import json
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert (out / "checkpoint.pt").exists()
