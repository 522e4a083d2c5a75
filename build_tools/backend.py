"""PEP 517 build backend: scikit-build-core, built against the target environment's torch.

torch is deliberately not a build requirement: pip would install a second, unpinned torch into its
isolated build environment (gigabytes of CUDA wheels) and the extension would be compiled against it
instead of the torch it will run with. Instead, before building, this backend asks the interpreter
pip installs into for its torch (``build_tools/find_torch.py``), fails within seconds with a clear
message if there is none, and hands torch's CMake prefix and version to CMake. docs/install.md says
why this mechanism and not the others.

Every hook of ``scikit_build_core.build`` is re-exported; the wheel and editable ones are wrapped.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from scikit_build_core import build as _skbuild
from scikit_build_core.build import *  # noqa: F401,F403  (build_sdist, get_requires_for_build_sdist, ...)

__all__ = list(_skbuild.__all__)

FIND_TORCH = pathlib.Path(__file__).with_name("find_torch.py")
# pip names its isolated build environments (a temp directory) with this prefix.
PIP_BUILD_ENV = "pip-build-env-"

NO_TORCH = """\
fastvae: no torch found in {python}.
fastvae is compiled against the torch already installed in the environment you install it into, so
torch must be installed first, for example (CPU build):

    {python} -m pip install torch==2.13.0

or a CUDA build from https://pytorch.org/get-started/locally/ ; then run `pip install .` again.
If torch is installed and this build cannot see it, your build frontend isolates builds in an
environment of its own (python -m build, uv): install with `pip install .`, or pass
--no-build-isolation (python -m build --no-isolation), or set FASTVAE_PYTHON to the interpreter
whose torch to use.
({detail})"""


def target_python() -> tuple[str, dict[str, str]]:
    """Return the interpreter of the environment being installed into, and the environment to run it.

    pip runs build hooks either with the target interpreter, hiding its site-packages behind a
    ``sitecustomize.py`` on PYTHONPATH and PYTHONNOUSERSITE=1 (default "virtual" isolation), or with
    the interpreter of a fresh venv whose ``pyvenv.cfg`` records the command that created it
    (``--use-feature venv-isolation``). Both are undone here; without isolation there is nothing to
    undo. ``FASTVAE_PYTHON`` overrides the guess.
    """
    env = dict(os.environ)
    if env.get("FASTVAE_PYTHON"):
        return env["FASTVAE_PYTHON"], env
    python = sys.executable
    entries = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    pip_site = [p for p in entries if pathlib.Path(p).parent.name.startswith(PIP_BUILD_ENV)]
    if pip_site:
        kept = [p for p in entries if p not in pip_site]
        env.pop("PYTHONPATH")
        if kept:
            env["PYTHONPATH"] = os.pathsep.join(kept)
        env.pop("PYTHONNOUSERSITE", None)  # set by pip; a plain `python` would see the user site
    elif sys.prefix != sys.base_prefix and pathlib.Path(sys.prefix).name.startswith(PIP_BUILD_ENV):
        cfg = pathlib.Path(sys.prefix, "pyvenv.cfg").read_text().splitlines()
        command = [line.split("=", 1)[1].strip() for line in cfg if line.startswith("command")]
        if command and " -m venv " in command[0]:
            python = command[0].split(" -m venv ")[0]
    return python, env


def find_torch() -> dict[str, str]:
    """Run ``find_torch.py`` with the target interpreter; exit with ``NO_TORCH`` if it has no torch."""
    python, env = target_python()
    try:
        proc = subprocess.run([python, str(FIND_TORCH)], env=env, capture_output=True, text=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(NO_TORCH.format(python=python, detail=exc)) from None
    if proc.returncode != 0:
        raise SystemExit(NO_TORCH.format(python=python, detail=proc.stderr.strip()))
    info = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    sys.stderr.write(f"fastvae: building against torch {info['version']} of {info['python']}\n")
    return info


def _with_torch(config_settings: dict | None) -> dict:
    """config_settings plus CMake definitions naming the target environment's torch."""
    torch = find_torch()
    settings = dict(config_settings or {})
    settings["cmake.define.FASTVAE_TORCH_CMAKE_PREFIX"] = torch["cmake_prefix_path"]
    settings["cmake.define.FASTVAE_TORCH_VERSION"] = torch["version"]
    settings["cmake.define.FASTVAE_TORCH_CUDA"] = torch["cuda"]
    return settings


# The get_requires hooks are the first pip calls after installing scikit-build-core: failing here
# stops an install without torch within seconds, before anything is compiled or downloaded.
def get_requires_for_build_wheel(config_settings=None):
    find_torch()
    return _skbuild.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings=None):
    find_torch()
    return _skbuild.get_requires_for_build_editable(config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _skbuild.build_wheel(wheel_directory, _with_torch(config_settings), metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _skbuild.build_editable(wheel_directory, _with_torch(config_settings), metadata_directory)
