"""Writing files so that readers see either the whole new file or none of it."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through a temporary file in the same folder, fsync it, then rename it over ``path``.

    Whatever fails (a full disk at write, close, fsync or rename; a kill), the temporary file is removed and
    ``path`` keeps its previous content. An OSError about the temporary file is raised again about ``path``,
    the file the user knows (same errno, so the same exception class)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _about(err, path) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any file the user writes
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename in (None, tmp):
            raise _about(err, path) from err
        raise


def _about(err: OSError, path: Path) -> OSError:
    return err if err.errno is None else OSError(err.errno, err.strerror, str(path))


def plain(value: object, nan_as_null: bool = False) -> object:
    """``value`` with numpy scalars and arrays made plain Python (they break json.dumps), and dict keys JSON
    cannot write made strings; with ``nan_as_null``, NaN (an undefined interval, a missing mean) becomes None."""
    if isinstance(value, dict):
        return {key if isinstance(key, str | int | float | bool) or key is None else str(key): plain(item, nan_as_null)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item, nan_as_null) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, without importing numpy here
        return plain(value.tolist(), nan_as_null)
    if nan_as_null and isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_json(path: Path, data: object) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=True) + "\n"
    write_atomic(path, lambda handle: handle.write(text.encode()))


@contextmanager
def staged_folder(dest: Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``dest`` to fill; when the block ends without an error it becomes
    ``dest`` by one rename, else it is removed. Readers therefore see no ``dest``, or a whole one: a folder of
    several files has no completion marker to check, so it must not appear before its last file is written.

    ``replace``: an existing ``dest`` is swapped out (renamed aside, then removed) once the new one is whole;
    without it an existing non-empty ``dest`` makes the rename fail (OSError) and is left as it was."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        stage = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial"))
    except OSError as err:
        raise _about(err, dest) from err
    try:
        os.chmod(stage, 0o777 & ~_UMASK)  # mkdtemp makes 0700; the folder is shared like any the user makes
        yield stage
        old = None
        if replace and dest.exists():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
            os.replace(dest, old / dest.name)
        try:
            os.rename(stage, dest)
        except OSError:
            if old is not None:  # put the previous folder back: the user keeps what they had
                os.replace(old / dest.name, dest)
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
