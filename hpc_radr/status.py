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

from hpc_radr.executors import job_files, slurm_state
from hpc_radr.manifest import Manifest, RunDir, load
from hpc_radr.results import read_failure, read_result, unused_gpu, unused_gpu_warning
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
    warnings: list[str] = field(default_factory=list)  # results that are whole but not what was asked for
    accounting: bool | None = None  # None: no Slurm job, or Slurm did not answer

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(c.state for c in self.configurations)
        return {state: found[state] for state in STATES if found[state]}

    def as_dict(self) -> dict:
        return {"run_dir": self.run_dir, "runs": self.runs, "counts": self.counts, "problems": self.problems,
                "warnings": self.warnings, "accounting": self.accounting, "jobs": [asdict(j) for j in self.jobs],
                "configurations": [asdict(c) for c in self.configurations]}


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


Key = tuple[str, int | None]  # (Slurm job id, array task or None)


def _without_record(run_dir: RunDir, key: Key, live: bool, accounting: bool) -> str | None:
    """A raw state for a task Slurm does not list, or None when nothing can be said yet.

    With accounting, sacct lists every task that started and squeue every queued one, so a task missing from a
    job Slurm still knows was cancelled before it started (Slurm 22.05 keeps no record of it); otherwise
    accounting is late. Without accounting, a task that ended more than MinJobAge ago is in neither: its own
    files say how it ended, and a task without any never started."""
    if accounting:
        return "CANCELLED before it started (no Slurm record of the task)" if live else None
    ended = job_files.ended(job_files.folder(run_dir.submitit, *key))
    if ended == "missing":
        return "CANCELLED before it started (accounting is off; the task left no files)"
    if ended is None:
        return "FAILED (accounting is off; the task ended without a result or a message from Slurm)"
    return f"{ended.upper()} (accounting is off; from the task's own files)"


def _job_status(entry: dict, view: slurm_state.SchedulerView, run_dir: RunDir) -> JobStatus:
    keys = [(entry["job_id"], k) for k in range(len(entry["tasks"]))] if entry["array"] else [(entry["job_id"], None)]
    live = any(job == entry["job_id"] for job, _ in view.states)
    counts: Counter = Counter()
    waiting = []
    for key in keys:
        raw = view.states.get(key) or _without_record(run_dir, key, live and entry["array"], view.accounting)
        if raw is None:
            counts["unknown"] += 1
            continue
        counts[slurm_state.normalize(raw)] += 1
        if raw.endswith(")") and "(" in raw and slurm_state.normalize(raw) == "pending":
            waiting.append(raw[raw.index("(") + 1:-1])
    return JobStatus(entry["kind"], entry["name"], entry["job_id"], len(keys), dict(counts),
                     sorted(set(waiting)))


def _slurm_log(run_dir: RunDir, job: Key) -> str | None:
    """The task's stderr as submitit lays it out, if the task ever started."""
    task_dir = job_files.folder(run_dir.submitit, *job)
    path = task_dir / f"{task_dir.name}_0_log.err"
    return str(path) if path.exists() else None


def status(run_dir: Path, manifest: Manifest | None = None) -> StatusReport:
    """Per-configuration states from the result files, and from Slurm for submitted runs (one squeue and one
    sacct call; without accounting, the tasks' own files). ``manifest``: when the caller holds it already."""
    manifest = manifest or load(RunDir(Path(run_dir)))
    on_cpu: list[str] = []

    def seen_result(run_id: str, record: dict) -> None:
        if unused_gpu(record):
            on_cpu.append(run_id)

    states, problems = run_states(manifest, seen_result)
    entries = read_submissions(manifest.run_dir)
    tasks = latest_tasks(entries)
    view: slurm_state.SchedulerView | None = None
    if entries:
        try:
            view = slurm_state.query([entry["job_id"] for entry in entries])
        except slurm_state.SchedulerUnavailable as err:
            problems.append(f"Slurm states unknown: {err}")
    seen = {job for job, _ in view.states} if view else set()

    def raw_state(key: Key, array: bool) -> str | None:
        if view is None:
            return None
        return view.states.get(key) or _without_record(manifest.run_dir, key, key[0] in seen and array,
                                                       view.accounting)

    for entry in (entry for entry in entries if entry["kind"] == "embed"):
        raw = raw_state((entry["job_id"], None), False)
        if raw and slurm_state.normalize(raw) not in ("pending", "running", "completed"):
            problems.append(f"embedding job {entry['job_id']} ({entry['name']}) ended {raw}: its training "
                            f"array does not run; log {_slurm_log(manifest.run_dir, (entry['job_id'], None))}")
    rows = []
    for config in manifest.configurations:
        state, error, log = states[config.run_id]
        job = tasks.get(config.run_id)
        raw = raw_state(job, job[1] is not None) if job else None
        if job and raw is None and state != "completed" and view is not None:
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
    jobs = [_job_status(entry, view, manifest.run_dir) for entry in entries] if view else []
    warnings = [unused_gpu_warning(on_cpu)] if on_cpu else []
    return StatusReport(str(manifest.run_dir.path), rows, len(manifest.runs), problems, jobs, warnings,
                        view.accounting if view else None)
