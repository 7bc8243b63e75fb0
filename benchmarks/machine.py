"""The machine and software a benchmark ran on."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from hpc_radr import package_versions

PACKAGES = ("hpc-radr", "birdnet-analyzer", "tensorflow", "keras", "numpy", "pandas", "pyarrow", "matplotlib",
            "scipy", "submitit", "typer", "rich", "pydantic", "librosa")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def _git(*args: str) -> str:
    try:
        # read-only: no optional locks, so `git status` never rewrites the index
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
                              cwd=Path(__file__).resolve().parent.parent).stdout.strip()
    except OSError:
        return ""


def describe(command: list[str]) -> dict:
    versions = package_versions(PACKAGES)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(command),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_gb": _mem_gb(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "load_average_at_start": os.getloadavg(),
    }
