"""``runs/latest``: the run directory the last submit made under ``runs/``, which commands use when none is given."""

from __future__ import annotations

from pathlib import Path

from hpc_radr.run_dir import RunDir, RunDirError

DEFAULT_RUNS_ROOT = Path("runs")


def resolve_run_dir(path: Path | None) -> RunDir:
    """The given run directory, or the one the last submit pointed ``runs/latest`` at."""
    if path is None:
        latest = DEFAULT_RUNS_ROOT / "latest"
        if not latest.exists():
            raise RunDirError("no RUN_DIR given and no runs/latest here; pass the run directory")
        path = latest.resolve()
    return RunDir(path)


def point_latest(run_dir: RunDir) -> None:
    """Make ``runs/latest`` name this run directory when it lives under ``runs/``."""
    root = DEFAULT_RUNS_ROOT.resolve()
    target = run_dir.path.resolve()
    if target.parent != root:
        return
    link = root / "latest"
    tmp = root / ".latest.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    tmp.replace(link)
