"""``submissions.jsonl``: every Slurm job submitted into a run directory, with the runs of each of its tasks, so
that status and resubmit can map Slurm's tasks back to runs. Appended one fsynced line per accepted job."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

from hpc_radr.run_dir import RunDir

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
