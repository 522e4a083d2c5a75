"""Installation: plain `pip install .` without torch fails fast and clearly; the build backend finds the
target environment's torch behind pip's isolation; `import fastvae` refuses an extension built against
another torch."""
import importlib.util
import os
import pathlib
import subprocess
import sys
import time
import venv

import pytest
import torch

from fastvae import _extension

REPO = pathlib.Path(__file__).resolve().parents[2]


def _load_backend():
    pytest.importorskip("scikit_build_core")
    spec = importlib.util.spec_from_file_location("fastvae_build_backend", REPO / "build_tools" / "backend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.install
def test_pip_install_without_torch_fails_fast_with_advice(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    start = time.monotonic()
    proc = subprocess.run([str(python), "-m", "pip", "install", str(REPO)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - start
    out = proc.stdout + proc.stderr
    if "scikit-build-core" in out and "No matching distribution" in out:
        pytest.skip("pip cannot reach scikit-build-core (the build requirement) from here")
    assert proc.returncode != 0, out
    assert "fastvae: no torch found in" in out and "pip install torch==2.13.0" in out, out
    assert seconds < 30, f"took {seconds:.1f} s"
    assert "Building wheel" not in out, out  # stopped before compiling anything


def test_find_torch_reports_the_running_torch():
    proc = subprocess.run([sys.executable, str(REPO / "build_tools" / "find_torch.py")],
                          capture_output=True, text=True, check=True)
    info = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    import torch.utils
    assert info["version"] == torch.__version__
    assert info["cmake_prefix_path"] == torch.utils.cmake_prefix_path
    assert info["python"] == sys.executable


def test_backend_undoes_pips_legacy_isolation(monkeypatch, tmp_path):
    backend = _load_backend()
    site = tmp_path / "pip-build-env-abc123" / "site"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), "/users/own/path"]))
    monkeypatch.setenv("PYTHONNOUSERSITE", "1")
    monkeypatch.delenv("FASTVAE_PYTHON", raising=False)
    python, env = backend.target_python()
    assert python == sys.executable
    assert env["PYTHONPATH"] == "/users/own/path" and "PYTHONNOUSERSITE" not in env


def test_backend_finds_the_target_of_pips_venv_isolation(monkeypatch, tmp_path):
    backend = _load_backend()
    prefix = tmp_path / "pip-build-env-xyz"
    prefix.mkdir()
    (prefix / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = false\n"
                                       f"command = /home/student/venv/bin/python3 -m venv {prefix}\n")
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delenv("FASTVAE_PYTHON", raising=False)
    assert backend.target_python()[0] == "/home/student/venv/bin/python3"
    monkeypatch.setenv("FASTVAE_PYTHON", "/opt/conda/bin/python")
    assert backend.target_python()[0] == "/opt/conda/bin/python"


def test_backend_stops_with_advice_when_the_target_has_no_torch(monkeypatch, tmp_path):
    backend = _load_backend()
    monkeypatch.setenv("FASTVAE_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(SystemExit, match="(?s)no torch found in .*pip install torch==2.13.0"):
        backend.get_requires_for_build_wheel()


@pytest.mark.parametrize("built, loaded, error, fragment", [
    ("2.13.0+cpu", "2.13.0+cpu", None, None),
    ("2.13.0+cpu", "2.14.1+cpu", ImportError, "built against torch 2.13.0+cpu, but torch 2.14.1+cpu"),
    ("2.13.0+cpu", "2.13.0+cu126", ImportError, "pip install --no-deps --force-reinstall ."),
])
def test_check_torch_version(built, loaded, error, fragment):
    if error is None:
        _extension.check_torch_version(built, loaded)
    else:
        with pytest.raises(error, match=fragment.replace("+", r"\+").replace(".", r"\.")):
            _extension.check_torch_version(built, loaded)


# Each row: code run before `import fastvae` in a fresh interpreter, and a fragment of the ImportError.
@pytest.mark.parametrize("setup, fragment", [
    # an extension recorded as built against another torch
    ("m = types.ModuleType('fastvae._build_info'); m.TORCH_VERSION = '2.0.0'; "
     "sys.modules['fastvae._build_info'] = m",
     f"built against torch 2.0.0, but torch {torch.__version__} is loaded"),
    # _C that cannot be loaded (e.g. undefined symbols after a torch upgrade)
    ("sys.modules['fastvae._C'] = None", "the C++ extension fails to load with torch"),
    # no build at all
    ("sys.modules['fastvae._build_info'] = None", "the C++ extension is not built"),
])
def test_import_refuses_a_mismatched_extension(setup, fragment):
    code = (f"import sys, types\n{setup}\n"
            "try:\n    import fastvae\nexcept ImportError as e:\n    print(e)\nelse:\n    print('imported')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert fragment in proc.stdout, proc.stdout + proc.stderr
    if "not built" not in fragment:
        assert "--force-reinstall" in proc.stdout
