"""fastvae._machine: the CPU named in recorded measurements (reproductions' metrics, benchmark tables)."""
import os
from pathlib import Path

import pytest

from fastvae import _machine


def test_describe_names_the_cpu_and_threads():
    d = _machine.describe()
    assert set(d) == {"processor", "platform", "logical_cpus", "torch_threads"}
    assert isinstance(d["processor"], str) and d["processor"].strip()
    assert d["logical_cpus"] == os.cpu_count() and d["torch_threads"] >= 1


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="Linux only: /proc/cpuinfo names the CPU")
def test_cpu_name_is_the_model_name_line():
    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")]
    if not names:
        pytest.skip("this kernel's /proc/cpuinfo has no model name line")
    assert _machine.cpu_name() == names[0]
