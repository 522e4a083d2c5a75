"""Ctrl-C, once or repeatedly, at any point of a fit (issue 20): in a subprocess that sends itself SIGINT, the fit
raises KeyboardInterrupt at an update boundary with a whole state (step = recorded updates, finite weights, no
temporary files), and finishing the run afterwards gives exactly what an uninterrupted run gives, for both model
kinds; also across a checkpoint, from the command line, and for fits outside the main thread."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading

import pytest
import torch

import fastvae

CHILD = pathlib.Path(__file__).with_name("interrupt_child.py")
ROWS = [
    # (kind, case, what the state must be afterwards)
    ("mlp", "step", dict(step=7, epochs=0, epoch_done=7)),
    ("mlp", "step-twice", dict(step=7, epochs=0, epoch_done=7)),
    ("mlp", "epoch-callback", dict(step=20, epochs=1, epoch_done=None)),
    ("mlp", "evaluation", dict(step=20, epochs=1, epoch_done=None)),
    ("mlp", "checkpoint", dict(step=20, epochs=1, epoch_done=None, checkpoint_loads=20)),
    ("mlp", "timer-no-callbacks", dict()),
    ("mlp", "through-checkpoint", dict(step=27, epochs=1, epoch_done=7)),
    ("networks", "step", dict(step=7, epochs=0, epoch_done=7)),
    ("networks", "step-twice", dict(step=7, epochs=0, epoch_done=7)),
    ("networks", "epoch-callback", dict(step=20, epochs=1, epoch_done=None)),
    ("networks", "evaluation", dict(step=20, epochs=1, epoch_done=None)),
    ("networks", "checkpoint", dict(step=20, epochs=1, epoch_done=None, checkpoint_loads=20)),
    ("networks", "through-checkpoint", dict(step=27, epochs=1, epoch_done=7)),
]


def child(kind, case, folder):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, str(CHILD), kind, case, str(folder)], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind, case, want", ROWS, ids=[f"{k}-{c}" for k, c, _ in ROWS])
def test_interrupt_stops_at_a_boundary_and_the_run_resumes_exactly(kind, case, want, tmp_path):
    got = child(kind, case, tmp_path)
    assert got["interrupted"] and got["finite"] and got["part_files"] == []
    assert got["step"] == got["updates"]  # Adam's step and the history agree
    for key, value in want.items():
        assert got[key] == value, key
    if got["epoch_done"] is not None:  # the epoch in progress accounts for the updates beyond whole epochs
        assert got["updates"] == 20 * got["epochs"] + got["epoch_done"]
    assert got["resumed_equal"]


def test_ctrl_c_of_the_command_line_leaves_a_checkpoint_that_resumes(need_mnist, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fastvae", "reproduce", "stats305c", "--out", str(out), "--data", str(need_mnist),
           "--epochs", "3", "--limit", "640", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = proc.stdout.readline()  # the first epoch's line: interrupt inside the second epoch
    assert first.startswith("epoch")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err
    assert "continue with --resume" in err
    assert list(out.glob(".*.part")) == []
    assert fastvae.VAE.load(out / "checkpoint.pt").optimizer_state_.step >= 10
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr
    straight = subprocess.run([*cmd[:6], str(tmp_path / "straight"), *cmd[7:]], capture_output=True, text=True,
                              timeout=600, env=env)
    assert straight.returncode == 0, straight.stderr
    a = json.loads((out / "metrics.json").read_text())
    b = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert a["final"] == b["final"]


def test_a_fit_outside_the_main_thread_is_not_interrupted_by_ctrl_c():
    torch.manual_seed(0)
    model = fastvae.VAE(16, 2, (8,), (8,))
    x = torch.randint(0, 256, (400, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    started = threading.Event()
    result = {}

    def run():
        result["history"] = model.fit(x, epochs=4, batch_size=10, seed=1, progress=False,
                                      callback=lambda e, i: started.set(), callback_every=1)
    t = threading.Thread(target=run)
    t.start()
    started.wait(30)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C reaches the main thread, as without fastvae
        os.kill(os.getpid(), signal.SIGINT)
        t.join(60)
    t.join(60)
    assert len(result["history"].update_rec) == 160 == model.optimizer_state_.step


def test_ctrl_c_during_a_save_outside_fit_finishes_the_file_first(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = fastvae.VAE(16, 2, (8,), (8,))
    real_save = torch.save

    def save(obj, f, *a, **k):
        os.kill(os.getpid(), signal.SIGINT)
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(KeyboardInterrupt):
        model.save(tmp_path / "m.pt")
    monkeypatch.undo()
    assert list(tmp_path.glob(".*.part")) == []
    assert all(torch.equal(a, b) for a, b in zip(fastvae.VAE.load(tmp_path / "m.pt").parameters(), model.parameters()))
