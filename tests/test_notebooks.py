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

REPO = pathlib.Path(__file__).resolve().parents[1]
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
