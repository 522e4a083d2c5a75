"""Atomic file writes: results, figures, checkpoints and downloads never leave a partial file, and a file
the user already had is replaced only by a complete new one."""
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from . import _checks
from ._interrupts import deferred_sigint


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a temp file in the destination folder, fsync it, give it the usual permissions
    (mkstemp creates 0600) and ``os.replace`` it onto ``path``. A symlink is written through: its target is
    replaced, the link stays; a destination that is not a regular file (a FIFO, a device) is refused (ValueError). On any error the temp file is removed and ``path`` is untouched; Ctrl-C during the
    write is held until the write is complete (fastvae._interrupts), so it never leaves a ``.part`` file either.
    Returns ``path`` as a Path."""
    with deferred_sigint():
        return _atomic_write(Path(path), write)


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    link, path = path, Path(os.path.realpath(path))  # a symlink's target is the file to replace
    if os.path.lexists(path) and not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO, a device, a folder ...
        through = "" if path == Path(os.path.abspath(link)) else f" (a link to {str(path)!r})"
        raise ValueError(f"path must name a regular file or a new one, got {str(link)!r}{through}, "
                         f"{_checks._file_kind(os.stat(path).st_mode)}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # persist the rename itself; best effort (not possible on every OS / filesystem)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return link
