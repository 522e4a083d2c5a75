"""fastvae --version and fastvae.__version__ come from one definition (python/fastvae/_version.py), which the
build reads too (pyproject.toml's dynamic version)."""
import subprocess
import sys

import pytest

import fastvae
from fastvae import cli


def test_version_flag_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastvae {fastvae.__version__}"


def test_version_flag_from_the_command_line():
    out = subprocess.run([sys.executable, "-m", "fastvae", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"fastvae {fastvae.__version__}"
