"""Real tiny and read-only file systems for tests, mounted in a private mount namespace.

Root ignores permission bits, so "read-only" has to be a read-only mount, and "full" a real small file system
filled to the last block: a tmpfs of a few KB. Each command under test runs inside the namespace, so the
mounts are gone when it ends (nothing to clean up, nothing visible to other processes). Needs root (CI) or
unprivileged user namespaces; without either the tests skip, unless HPC_RADR_REQUIRE_SLURM is set (CI),
where they fail like the Slurm tests do.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# as root; as an ordinary user where user namespaces are allowed
PREFIXES = (("unshare", "--mount", "--propagation", "private"),
            ("unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"))


def q(path: Path | str) -> str:
    return shlex.quote(str(path))


def tmpfs(folder: Path, size: str = "64k") -> str:
    """Shell: a fresh tmpfs of ``size`` over ``folder`` (which must exist)."""
    return f"mount -t tmpfs -o size={size},mode=0755 tmpfs {q(folder)}"


def fill(folder: Path) -> str:
    """Shell: fill the file system of ``folder`` to the last block (dd stops at ENOSPC)."""
    return f"dd if=/dev/zero of={q(folder / '.fill')} bs=4k 2>/dev/null || true"


def read_only(folder: Path) -> str:
    """Shell: make ``folder`` a read-only view of itself (a read-only bind mount)."""
    return f"mount --bind {q(folder)} {q(folder)} && mount -o remount,ro,bind {q(folder)}"


@dataclass(frozen=True)
class Inside:
    """What a command did inside the namespace, and what ``after`` printed there before the mounts went."""

    returncode: int
    stdout: str
    stderr: str
    after: str


@dataclass(frozen=True)
class MountNamespace:
    prefix: tuple[str, ...]

    def run(self, setup: str, command: list[str], after: str = "", cwd: Path | None = None,
            timeout: float = 300) -> Inside:
        """Run ``setup`` (shell, mounts), then ``command``, then ``after`` (shell, e.g. listing what the command
        left on the mounts), all in one new mount namespace."""
        with tempfile.TemporaryDirectory(prefix="hpc-radr-ns-") as scratch:
            out, err, code = (Path(scratch) / name for name in ("out", "err", "code"))
            script = (f"set -eu\n{setup}\nset +e\n{shlex.join(command)} >{q(out)} 2>{q(err)}\n"
                      f"echo $? >{q(code)}\nset -e\n{after}\n")
            done = subprocess.run([*self.prefix, "sh", "-c", script], capture_output=True, text=True,
                                  timeout=timeout, cwd=cwd)
            if done.returncode != 0 or not code.exists():
                raise AssertionError(f"mount namespace script failed ({done.returncode}):\n{script}\n{done.stderr}")
            return Inside(int(code.read_text()), out.read_text(), err.read_text(), done.stdout)


def mount_namespace() -> MountNamespace:
    """A way to mount here, or skip (fail under HPC_RADR_REQUIRE_SLURM) saying why there is none."""
    failures = []
    with tempfile.TemporaryDirectory(prefix="hpc-radr-mnt-") as scratch:
        folder = Path(scratch)
        check = (f"set -e\n{tmpfs(folder, '16k')}\n{fill(folder)}\n{read_only(folder)}\n"
                 f"if touch {q(folder / 'x')} 2>/dev/null; then exit 1; fi")
        for prefix in PREFIXES:
            try:
                done = subprocess.run([*prefix, "sh", "-c", check], capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as err:
                failures.append(f"{' '.join(prefix)}: {err}")
                continue
            if done.returncode == 0:
                return MountNamespace(prefix)
            failures.append(f"{' '.join(prefix)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    reason = ("cannot mount test file systems here (needs root, or unprivileged user namespaces): "
              + "; ".join(failures))
    if os.environ.get("HPC_RADR_REQUIRE_SLURM"):
        pytest.fail(reason)
    pytest.skip(reason)
