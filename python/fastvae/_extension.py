"""Load fastvae._C only if it was compiled against the torch that is loaded now.

A C++ extension compiled against one torch and loaded with another fails at best with undefined
symbols and at worst runs on a different ABI (silent garbage), so the torch version recorded at
build time (``_build_info.py``, written by CMakeLists.txt) must equal ``torch.__version__``.
"""
import importlib

import torch

REBUILD = ("Rebuild fastvae against the installed torch: from the fastvae source directory run "
           "`pip install --no-deps --force-reinstall .` (or `pip install --no-deps -e .` for an "
           "editable install; see docs/install.md).")


def check_torch_version(built: str, loaded: str) -> None:
    """Raise ImportError unless ``built`` (the torch _C was compiled against) equals ``loaded``."""
    if built != loaded:
        raise ImportError(f"fastvae: the C++ extension was built against torch {built}, but torch "
                          f"{loaded} is loaded. {REBUILD}")


def load_extension():
    """Import and return fastvae._C after the version check; ImportError with advice otherwise."""
    try:
        build_info = importlib.import_module("fastvae._build_info")
    except ImportError as exc:
        raise ImportError(f"fastvae: the C++ extension is not built ({exc}). Install with "
                          f"`pip install .` (see docs/install.md).") from exc
    check_torch_version(build_info.TORCH_VERSION, torch.__version__)
    try:
        return importlib.import_module("fastvae._C")
    except ImportError as exc:  # e.g. undefined symbols: a torch rebuilt under the same version
        raise ImportError(f"fastvae: the C++ extension fails to load with torch {torch.__version__}: "
                          f"{exc}. {REBUILD}") from exc


_C = load_extension()  # fastvae._C, after the check; every module takes it from here
