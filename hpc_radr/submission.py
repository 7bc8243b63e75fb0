"""What a submission has to do: freeze the manifest, then find the caches and runs still missing."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hpc_radr import manifest as manifests
from hpc_radr.datasets import TEST_UNIT
from hpc_radr.manifest import Manifest, RunDir
from hpc_radr.results import has_result


@dataclass(frozen=True)
class Work:
    """The part of a frozen sweep that still has to run."""

    manifest: Manifest
    missing_units: list[str]
    pending_runs: list[str]
    done_runs: list[str]


def prepare(sweep: Path, run_dir: Path | None, data: Path | None, model: Path | None, dedupe: bool,
            overrides: dict, write: bool = True) -> Manifest:
    """Validate the sweep, data and model against the run directory, and with ``write`` freeze the manifest.

    Without ``write`` nothing is written: callers freeze (``manifest.freeze``) once nothing can fail any more."""
    raw, parsed = manifests.plan_manifest(sweep, data, model, dedupe, overrides)
    target = RunDir(run_dir or manifests.DEFAULT_RUNS_ROOT / parsed.name)
    found = manifests.existing(target, raw)
    planned = found or Manifest(raw, target)
    return manifests.freeze(planned) if write else planned


def remaining(manifest: Manifest, force: bool = False, exclude: set[str] = frozenset()) -> Work:
    """Units without a cache and runs without a valid result (all runs when forced), less ``exclude``."""
    run_dir = manifest.run_dir
    pending, done = [], []
    for config in manifest.runs:
        if config.run_id in exclude:
            continue
        (done if has_result(run_dir, config.run_id) and not force else pending).append(config.run_id)
    needed = {manifest.run(r).dataset for r in pending} | ({TEST_UNIT} if pending else set())
    missing_units = [name for name, spec in manifest.units.items()
                     if name in needed and not run_dir.cache_file(spec["key"]).exists()]
    return Work(manifest, missing_units, pending, done)


SUBMISSIONS = "submissions.jsonl"


def record_submission(run_dir: RunDir, entry: dict) -> None:
    """Append one submitted job to the run directory's log of submissions (one JSON line, fsynced)."""
    line = json.dumps({"submitted_at": datetime.now(UTC).isoformat(timespec="seconds"), **entry}) + "\n"
    with open(run_dir.path / SUBMISSIONS, "a") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_submissions(run_dir: RunDir) -> list[dict]:
    """Every job submitted into this run directory, oldest first (a torn last line is ignored)."""
    path = run_dir.path / SUBMISSIONS
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


@contextmanager
def submission_lock(run_dir: RunDir) -> Iterator[None]:
    """One submission at a time per run directory; a second one is refused, not queued."""
    run_dir.path.mkdir(parents=True, exist_ok=True)
    with open(run_dir.path / ".submit.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise manifests.RunDirError(f"{run_dir.path}: another submission into this run directory is "
                                        "in progress; wait for it to return") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def sweep_drift(manifest: Manifest) -> str | None:
    """A warning when the sweep file on disk no longer matches the frozen copy (the frozen one is used)."""
    path = Path(manifest.raw["sweep_file"])
    try:
        current = path.read_text(encoding="utf-8")
    except OSError:
        return f"{path} is gone; using the copy frozen at submit"
    if current != manifest.raw["sweep_text"]:
        return f"{path} changed since submit; using the copy frozen at submit ({manifest.run_dir.path / 'sweep.toml'})"
    return None
