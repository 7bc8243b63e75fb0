"""The state of every configuration of a run directory, from its result and failure records.

A configuration is ``completed`` when its run has a valid result, ``failed`` when the last attempt left a
failure record, else ``missing``. Scheduler states (pending, running, cancelled, timeout, out of memory)
are layered on top by the executor that knows them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hpc_radr.manifest import Manifest, RunDir, load
from hpc_radr.results import read_failure, read_result

STATES = ("completed", "running", "pending", "failed", "cancelled", "timeout", "out_of_memory", "missing")


@dataclass
class ConfigurationStatus:
    index: int
    dataset: str
    upsampling_mode: str
    upsampling_ratio: float
    focal_loss: bool
    seed: int
    run_id: str
    state: str
    error: str | None = None
    log: str | None = None
    scheduler_state: str | None = None
    job_id: str | None = None


@dataclass
class StatusReport:
    run_dir: str
    configurations: list[ConfigurationStatus]
    runs: int
    problems: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(c.state for c in self.configurations)
        return {state: found[state] for state in STATES if found[state]}

    def as_dict(self) -> dict:
        return {"run_dir": self.run_dir, "runs": self.runs, "counts": self.counts, "problems": self.problems,
                "configurations": [asdict(c) for c in self.configurations]}


def run_states(manifest: Manifest) -> tuple[dict[str, tuple[str, str | None, str | None]], list[str]]:
    """run_id -> (state, last error line, log path), and the result files that had to be skipped."""
    run_dir = manifest.run_dir
    states: dict[str, tuple[str, str | None, str | None]] = {}
    problems = []
    for config in manifest.runs:
        found = read_result(run_dir, config.run_id)
        if found.record is not None:
            states[config.run_id] = ("completed", None, None)
            continue
        if found.problem:
            problems.append(found.problem)
        failure = read_failure(run_dir, config.run_id)
        if failure:
            error = (failure.get("error") or "").strip().splitlines()
            states[config.run_id] = ("failed", error[-1] if error else None, failure.get("log"))
        else:
            states[config.run_id] = ("missing", None, None)
    return states, problems


def status(run_dir: Path) -> StatusReport:
    manifest = load(RunDir(Path(run_dir)))
    states, problems = run_states(manifest)
    rows = []
    for config in manifest.configurations:
        state, error, log = states[config.run_id]
        rows.append(ConfigurationStatus(**config.as_dict(), state=state, error=error, log=log))
    return StatusReport(str(manifest.run_dir.path), rows, len(manifest.runs), problems)
