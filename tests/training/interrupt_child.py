"""A process that interrupts its own fit with SIGINT at a chosen point (tests/training/test_faults_interrupts.py), then
prints what it found as one JSON line: whether KeyboardInterrupt came, the state's counts, and whether finishing
the run (resumed by the next fit, or from the checkpoint) gives exactly what an uninterrupted run gives.

    python interrupt_child.py KIND CASE FOLDER
"""
import glob
import json
import os
import signal
import sys
import threading
import time

import numpy as np
import torch
from torch import nn

import fastvae
from fastvae.models import mlp_stepper, network_stepper

KIND, CASE, FOLDER = sys.argv[1], sys.argv[2], sys.argv[3]
X = torch.randint(0, 256, (200, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
XT = X[:40]
RUN = dict(epochs=3, batch_size=10, seed=1, progress=False, test_images=XT)  # 20 updates per epoch


def make():
    torch.manual_seed(0)
    if KIND == "mlp":
        return fastvae.VAE(32, 2, (16,), (16,))
    return fastvae.VAE.from_networks(nn.Sequential(nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 4)),
                                     nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 32)), 2)


def sigint():
    os.kill(os.getpid(), signal.SIGINT)


def at_updates(*updates):
    def cb(event, info):
        if event == "step" and info["update"] in updates:
            sigint()
    return cb


def in_epoch_callback(event, info):
    if event == "epoch" and info["epoch"] == 0:
        sigint()


def patch_evaluate():  # SIGINT in the middle of the first test evaluation
    cls = mlp_stepper.MlpStepper if KIND == "mlp" else network_stepper.NetworkStepper
    original, calls = cls.evaluate, []

    def evaluate(self, *a):
        if not calls:
            calls.append(1)
            sigint()
        return original(self, *a)
    cls.evaluate = evaluate


def patch_save():  # SIGINT while the checkpoint is being written
    original, calls = torch.save, []

    def save(obj, f, *a, **k):
        if not calls:
            calls.append(1)
            sigint()
        return original(obj, f, *a, **k)
    torch.save = save


STARTED = threading.Event()  # set just before the interrupted fit starts


def timer(seconds):  # SIGINT from another thread, `seconds` after the fit started: no callback is involved
    threading.Thread(target=lambda: (STARTED.wait(), time.sleep(seconds), sigint()), daemon=True).start()


CASES = {  # what a case does: fit keywords, and preparation run before the fit
    "step": (dict(callback=at_updates(7), callback_every=1), None),
    "step-twice": (dict(callback=at_updates(7, 8), callback_every=1), None),
    "epoch-callback": (dict(callback=in_epoch_callback), None),
    "evaluation": (dict(), patch_evaluate),
    "checkpoint": (dict(checkpoint=os.path.join(FOLDER, "ck.pt")), patch_save),
    # 1500 epochs take about 1.4 s here: far longer than the delay on any machine
    "timer-no-callbacks": (dict(callback_every=0, epochs=1500), lambda: timer(0.1)),
    "through-checkpoint": (dict(callback=at_updates(27), callback_every=1), None),
}


def main():
    kw, prepare = CASES[CASE]
    run = dict(RUN, **kw)
    reference = make()
    reference.fit(X, **dict(run, callback=None, checkpoint=None))
    if prepare is not None:
        prepare()
    model = make()
    interrupted = False
    try:
        STARTED.set()
        model.fit(X, **run)
    except KeyboardInterrupt:
        interrupted = True
    h, st = model.history_, model.optimizer_state_
    out = {"interrupted": interrupted, "step": st.step, "updates": len(h.update_rec), "epochs": len(h.train_elbo),
           "epoch_done": None if model.epoch_state_ is None else model.epoch_state_["done"],
           "finite": all(bool(torch.isfinite(p).all()) for p in model.parameters()),
           "part_files": glob.glob(os.path.join(FOLDER, ".*.part"))}
    if run.get("checkpoint"):
        out["checkpoint_loads"] = fastvae.VAE.load(run["checkpoint"]).optimizer_state_.step if KIND == "mlp" else \
            fastvae.NetworkVAE.load(run["checkpoint"], make().encoder, make().decoder).optimizer_state_.step
    if CASE == "through-checkpoint":
        model.save(os.path.join(FOLDER, "mid.pt"))
        model = fastvae.VAE.load(os.path.join(FOLDER, "mid.pt")) if KIND == "mlp" else \
            fastvae.NetworkVAE.load(os.path.join(FOLDER, "mid.pt"), make().encoder, make().decoder)
    # finish the run: the interrupted epoch first, then the ones that remain
    rest = run["epochs"] - len(model.history_.train_elbo)
    model.fit(X, **dict(run, epochs=rest, seed=None, callback=None, checkpoint=None))
    out["resumed_equal"] = (all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
                            and np.array_equal(model.history_.update_rec, reference.history_.update_rec)
                            and np.array_equal(model.history_.train_elbo, reference.history_.train_elbo)
                            and np.array_equal(model.history_.test_elbo, reference.history_.test_elbo)
                            and torch.equal(model.generator_state_, reference.generator_state_))
    print(json.dumps(out))


main()
