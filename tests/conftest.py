"""Shared fixtures. Resources a test needs but the machine may lack (the MNIST files, nbclient) go through
:func:`require`: missing, the test is skipped locally but FAILS when the environment variable ``CI`` is set
(``CI=true``, as CI services set it), so a CI run can never pass by skipping them."""
import importlib
import os
import pathlib

import pytest
import torch

from fastvae.datasets import MNIST_FILES, _find_file, data_dir

# FASTVAE_DATA, else the project's shared data folder beside the repository (where CI has it). Exported,
# so the CLI subprocesses and notebook kernels the tests start read the same folder.
REPO = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("FASTVAE_DATA", str(REPO.parent / "shared" / "data" / "mnist"))
MNIST_DIR = data_dir()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(available: bool, what: str, *, module_level: bool = False) -> None:
    """Skip (locally) or fail (under CI) unless ``available``; ``what`` says what is missing and how to get it."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{what} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(what, allow_module_level=module_level)


def require_module(name: str):
    """``pytest.importorskip`` that fails under CI; for module-level use."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        require(False, f"{name} is not installed ({e}); pip install '.[test]'", module_level=True)


def has_mnist(folder=MNIST_DIR) -> bool:
    return all(_find_file(folder, name) is not None for name in MNIST_FILES)


@pytest.fixture(scope="session")
def mnist_dir():
    return MNIST_DIR


@pytest.fixture
def need_mnist(mnist_dir):
    """The MNIST folder, all four files present (else skip locally / fail under CI)."""
    require(has_mnist(mnist_dir), f"MNIST not found in {mnist_dir}; set FASTVAE_DATA or run "
                                  "fastvae.datasets.download_mnist()")
    return mnist_dir


@pytest.fixture
def two_threads():
    """Two torch threads for the test: Adam's and the engine's parallel_for split into two chunks."""
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def stop_at(update):
    """A fit callback that raises KeyboardInterrupt at the given update (fit stops cleanly there)."""
    def cb(event, info):
        if event == "step" and info["update"] == update:
            raise KeyboardInterrupt
    return cb
