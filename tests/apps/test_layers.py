"""The import layers of python/fastvae (.importlinter, checked by import-linter in .ci/run): the package keeps
them, and the check does fail when a lower layer imports a higher one."""
import pathlib
import shutil
import subprocess
import sys

import pytest

from conftest import require_module

require_module("importlinter")
REPO = pathlib.Path(__file__).resolve().parents[2]
LINT = pathlib.Path(sys.executable).with_name("lint-imports")


def lint(source_root: pathlib.Path):
    return subprocess.run([str(LINT), "--no-cache", str(REPO / ".importlinter")], cwd=source_root,
                          env={"PYTHONPATH": str(source_root), "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=300)


def test_the_package_keeps_its_layers():
    out = lint(REPO / "python")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 3 kept, 0 broken." in out.stdout


@pytest.mark.parametrize("module, imports", [("types.py", "from .training import fit"),
                                             ("models/base.py", "from ..api import fit as api_fit")])
def test_an_upward_import_breaks_the_check(tmp_path, module, imports):
    copy = tmp_path / "fastvae"
    shutil.copytree(REPO / "python" / "fastvae", copy, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    path = copy / module
    path.write_text(path.read_text() + f"\n{imports}  # upward\n")
    out = lint(tmp_path)
    assert out.returncode != 0
    lower = "fastvae." + module.removesuffix(".py").replace("/", ".")
    assert f"{lower} is not allowed to import" in out.stdout
