"""Storage faults: a full disk or quota, a read-only or forbidden folder.

Every command writes its files atomically (``hpc_radr.atomic``), so such a fault loses nothing that was
already written; what is left is telling the user clearly which path failed and why, and checking before a
submission that its run directory can be written at all.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from hpc_radr.errors import HpcRadrError

# errno -> what it means for the user; these are the faults of the place being written, not of the program.
STORAGE_ERRNOS = {
    errno.ENOSPC: "disk or quota full",
    errno.EDQUOT: "disk or quota full",
    errno.EROFS: "",  # "Read-only file system" says it all
    errno.EACCES: "no write permission for this user",
}
FULL = (errno.ENOSPC, errno.EDQUOT)

# What a probe writes: enough to need a data block on any file system (an empty file fits in an inode on a
# full disk), and about the size of a submission's manifest.
PROBE_BYTES = 64 * 1024


class NotWritable(HpcRadrError):
    """A folder a submission would write into cannot be written; raised before anything is written."""


def storage_error(err: BaseException | None) -> OSError | None:
    """The storage fault behind ``err`` (itself or what caused it), or None if it is something else."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
            return err
        err = err.__cause__ or err.__context__
    return None


def describe(err: OSError, unnamed: str = "a file") -> str:
    """``cannot write PATH: <system message> (<what it means>)``; ``unnamed`` stands in for the path when the
    error does not carry one (a failed write to an open file)."""
    return f"cannot write {err.filename or unnamed}: {_reason(err)}"


def _reason(err: OSError) -> str:
    meaning = STORAGE_ERRNOS.get(err.errno)
    return f"{err.strerror or err}" + (f" ({meaning})" if meaning else "")


def hint(err: OSError) -> str:
    """What to do about ``err``."""
    if err.errno in FULL:
        return "free space (or quota) there and run it again"
    return "choose a writable location, or ask for write access, and run it again"


def _nearest_existing(path: Path) -> Path:
    """``path`` or the closest folder above it that exists: where a new run directory would be created."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe(folder: Path) -> None:
    """Write (and fsync) a small temporary file in ``folder`` and remove it; raises the OSError writing gets.

    A real write is the only reliable test: permission bits say nothing for root or ACLs, a read-only bind
    mount shares its device with a writable one, and statvfs does not know user quotas."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".hpc-radr-probe.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        Path(tmp).unlink(missing_ok=True)


# Folders of a run directory that tasks write into; each may be its own mount (scratch, quotas per folder).
WRITTEN_FOLDERS = ("results", "failures", "models", "logs", "cache", "data", "submitit")


def check_writable(run_dir: Path) -> None:
    """Refuse a submission whose run directory (or, if new, the folder it would be made in) cannot be written.

    Raises NotWritable naming the folder and the reason; nothing is left behind."""
    targets = [_nearest_existing(run_dir)]
    if targets[0] == run_dir.absolute():
        targets += [run_dir / name for name in WRITTEN_FOLDERS if (run_dir / name).is_dir()]
    for folder in targets:
        if not folder.is_dir():
            raise NotWritable(f"{folder} is not a folder; nothing was submitted")
        try:
            probe(folder)
        except OSError as err:
            if err.errno not in STORAGE_ERRNOS:
                raise
            raise NotWritable(f"cannot write into {folder}: {_reason(err)}; nothing was submitted; "
                              f"{hint(err)}") from None
