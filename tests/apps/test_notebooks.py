"""Execute every notebook in notebooks/ top to bottom (select with ``-m notebooks``; runs by default).

The notebooks train the homework VAEs with their full settings, so this takes minutes, not seconds.
"""
import os
import pathlib
import time

import pytest

from conftest import require, require_module  # skip locally, fail under CI  # noqa: E402

nbformat = require_module("nbformat")
nbclient = require_module("nbclient")

REPO = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, mnist_dir, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    uses_mnist = any("load_mnist" in c.source for c in nb.cells if c.cell_type == "code")
    if uses_mnist:
        require(mnist_dir.is_dir(), f"MNIST not found in {mnist_dir}")
    if "FASTVAE_DATA" not in os.environ:  # the kernel inherits this environment
        monkeypatch.setenv("FASTVAE_DATA", str(mnist_dir))
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    print(f"{path.name}: {time.perf_counter() - t0:.0f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


MACHINE_PATHS = ("/work/", "/root/", "/home/", "/Users/", "C:\\\\")  # as they would appear in the stored JSON


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_notebook_shows_figures(path):
    """The notebook as stored (by scripts/execute_notebooks.py) holds its outputs: a reader browsing the
    repository sees at least one figure and no error, and no machine-specific folder in code or outputs."""
    nb = nbformat.read(path, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o.get("output_type") == "error"]
    assert not errors, f"{path.name} is stored with errors: {errors}"
    assert any("image/png" in o.get("data", {}) for o in outputs), (
        f"{path.name} is stored without a figure; run python scripts/execute_notebooks.py {path.stem}")
    text = path.read_text(encoding="utf-8")
    leaked = [p for p in MACHINE_PATHS if p in text]
    assert not leaked, f"{path.name} names machine folders {leaked}"
