"""Print where the running interpreter's torch is, for the build: one ``key=value`` per line.

The one definition of "the torch fastvae builds against": the PEP 517 backend
(``build_tools/backend.py``) runs this with the target environment's interpreter, and
``CMakeLists.txt`` runs it with ``Python_EXECUTABLE`` for development builds.

Keys: ``version`` (``torch.__version__``), ``cmake_prefix_path`` (``torch.utils.cmake_prefix_path``),
``cuda`` (``torch.version.cuda`` or ``none``), ``python`` (``sys.executable``).
Exit status 3 and a message on stderr when torch cannot be imported.
"""
import sys

try:
    import torch
    import torch.utils
except ImportError as exc:  # torch absent, or present but broken
    sys.stderr.write(f"torch cannot be imported by {sys.executable}: {exc}\n")
    sys.exit(3)

print(f"version={torch.__version__}")
print(f"cmake_prefix_path={torch.utils.cmake_prefix_path}")
print(f"cuda={torch.version.cuda or 'none'}")
print(f"python={sys.executable}")
