"""Atomic file writes: write beside the target, then rename into place.

``os.replace`` is atomic on POSIX, so a crash or an error mid-write never leaves a
half-written file where a good one was: readers see the old file or the new one.

The temporary file is named ``.NAME.atrous-PID-XXXXXXXX.tmp``. An error removes it; only a
process killed outright (``kill -9``, power loss) leaves one behind, and
:func:`remove_stale_temp_files` clears those at the next start of the run or output
folder: a temporary file is stale when the process named in it is no longer running, so
a concurrent writer's file is never touched.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_path)``, then move the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600; give the file the permissions open() would have (0666 & ~umask).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.atrous-(\d+)-[^.]+\.tmp$")


def temp_prefix(name: str) -> str:
    """The prefix of this process's temporary files for the target ``name``."""
    return f".{name}.atrous-{os.getpid()}-"


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (and folders) atrous left in ``folder`` from processes
    that no longer run; return what was removed. Other files are never touched."""
    import shutil

    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMP_NAME.match(entry.name)
        if match is None or _running(int(match.group(1))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            continue
        removed.append(entry)
    return removed


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
