"""The state of every configuration of a run directory, from its result and failure records.

A configuration is ``completed`` when its run has a valid result, ``failed`` when the last attempt left a
failure record, else ``missing``. Scheduler states (pending, running, cancelled, timeout, out of memory)
are layered on top by the executor that knows them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hpc_radr.executors import slurm_state
from hpc_radr.manifest import Manifest, RunDir, load
from hpc_radr.results import read_failure, read_result
from hpc_radr.submission import read_submissions

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
class JobStatus:
    """One submitted Slurm job (an embedding job, a training array, the collect job) as Slurm sees it now:
    where a sweep is in its chain, and why a job waits."""

    kind: str
    name: str
    job_id: str
    tasks: int
    counts: dict[str, int]
    waiting_for: list[str]  # Slurm's reasons for pending tasks: Dependency, JobArrayTaskLimit, Resources, ...


@dataclass
class StatusReport:
    run_dir: str
    configurations: list[ConfigurationStatus]
    runs: int
    problems: list[str] = field(default_factory=list)
    jobs: list[JobStatus] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(c.state for c in self.configurations)
        return {state: found[state] for state in STATES if found[state]}

    def as_dict(self) -> dict:
        return {"run_dir": self.run_dir, "runs": self.runs, "counts": self.counts, "problems": self.problems,
                "jobs": [asdict(j) for j in self.jobs], "configurations": [asdict(c) for c in self.configurations]}


def run_states(manifest: Manifest, on_result: Callable[[str, dict], None] | None = None,
               ) -> tuple[dict[str, tuple[str, str | None, str | None]], list[str]]:
    """run_id -> (state, last error line, log path), and the result files that had to be skipped.
    ``on_result(run_id, record)`` (if given) sees every valid result as it is read, so callers need not read
    the files again (and need not keep whole records alive)."""
    run_dir = manifest.run_dir
    states: dict[str, tuple[str, str | None, str | None]] = {}
    problems = []
    for config in manifest.runs:
        found = read_result(run_dir, config.run_id)
        if found.record is not None:
            states[config.run_id] = ("completed", None, None)
            if on_result is not None:
                on_result(config.run_id, found.record)
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


def latest_tasks(entries: list[dict]) -> dict[str, tuple[str, int | None]]:
    """run_id -> (job id, array task) of its most recent submission."""
    tasks: dict[str, tuple[str, int | None]] = {}
    for entry in entries:
        if entry["kind"] == "train":
            for k, run_ids in enumerate(entry["tasks"]):
                for run_id in run_ids:
                    tasks[run_id] = (entry["job_id"], k if entry["array"] else None)
    return tasks


def _job_status(entry: dict, scheduler: dict) -> JobStatus:
    keys = [(entry["job_id"], k) for k in range(len(entry["tasks"]))] if entry["array"] else [(entry["job_id"], None)]
    seen = any(job == entry["job_id"] for job, _ in scheduler)
    counts: Counter = Counter()
    waiting = []
    for key in keys:
        raw = scheduler.get(key)
        if raw is None:  # see status(): a task cancelled while queued leaves no record; else accounting is late
            counts["cancelled" if seen and entry["array"] else "unknown"] += 1
            continue
        counts[slurm_state.normalize(raw)] += 1
        if raw.endswith(")") and "(" in raw:
            waiting.append(raw[raw.index("(") + 1:-1])
    return JobStatus(entry["kind"], entry["name"], entry["job_id"], len(keys), dict(counts),
                     sorted(set(waiting)))


def _slurm_log(run_dir: RunDir, job: tuple[str, int | None]) -> str | None:
    """The task's stderr as submitit lays it out, if the task ever started."""
    name = job[0] if job[1] is None else f"{job[0]}_{job[1]}"
    path = run_dir.submitit / name / f"{name}_0_log.err"
    return str(path) if path.exists() else None


def status(run_dir: Path) -> StatusReport:
    """Per-configuration states from the result files, and from Slurm for submitted runs (one sacct call)."""
    manifest = load(RunDir(Path(run_dir)))
    states, problems = run_states(manifest)
    entries = read_submissions(manifest.run_dir)
    tasks = latest_tasks(entries)
    embeds = [entry for entry in entries if entry["kind"] == "embed"]
    scheduler: dict = {}
    if entries:
        try:
            scheduler = slurm_state.query([entry["job_id"] for entry in entries])
        except slurm_state.SchedulerUnavailable as err:
            problems.append(f"Slurm states unknown: {err}")
    for entry in embeds:
        raw = scheduler.get((entry["job_id"], None))
        if raw and slurm_state.normalize(raw) not in ("pending", "running", "completed"):
            problems.append(f"embedding job {entry['job_id']} ({entry['name']}) ended {raw}: its training "
                            f"array does not run; log {_slurm_log(manifest.run_dir, (entry['job_id'], None))}")
    seen = {job for job, _ in scheduler}
    rows = []
    for config in manifest.configurations:
        state, error, log = states[config.run_id]
        job = tasks.get(config.run_id)
        raw = scheduler.get(job) if job else None
        if job and raw is None and job[0] in seen:
            # squeue lists every queued task of a live array and sacct every started one; Slurm 22.05 keeps
            # no record of an array task cancelled before it started.
            raw = "CANCELLED before it started (no Slurm record of the task)"
        elif job and raw is None and state != "completed":
            error = error or "no Slurm record yet (accounting lists ended jobs a few seconds late)"
        if raw and state != "completed":
            slurm = slurm_state.normalize(raw)
            if slurm == "completed":
                state, error = "failed", error or "the task ended without writing a result"
            else:
                state = slurm
            if state not in ("pending", "running"):
                log = log or _slurm_log(manifest.run_dir, job)
        rows.append(ConfigurationStatus(**config.as_dict(), state=state, error=error, log=log, scheduler_state=raw,
                                        job_id=(job[0] if job[1] is None else f"{job[0]}_{job[1]}") if job else None))
    jobs = [_job_status(entry, scheduler) for entry in entries] if scheduler else []
    return StatusReport(str(manifest.run_dir.path), rows, len(manifest.runs), problems, jobs)
