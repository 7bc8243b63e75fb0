"""Writing files so that readers see either the whole new file or none of it."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
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
