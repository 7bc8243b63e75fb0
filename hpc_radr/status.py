"""The state of every configuration of a run directory: its run's result and failure records, with Slurm's
view of the task that last ran it layered on top.

A configuration is ``completed`` when its run has a valid result, ``failed`` when the last attempt left a
failure record, else ``missing``; a submitted run may instead be pending, running, cancelled, timed out or out
of memory, as Slurm (``query``, injected so it can be replaced) or, without accounting, the task's own files
say.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hpc_radr.executors import job_files, slurm_state
from hpc_radr.manifest import Manifest, load
from hpc_radr.results import ACTIVE, State, run_states, unused_gpu, unused_gpu_warning
from hpc_radr.run_dir import RunDir
from hpc_radr.submission_log import read_submissions
from hpc_radr.sweep import Configuration

Query = Callable[[list[str]], slurm_state.SchedulerView]


@dataclass
class ConfigurationStatus:
    configuration: Configuration
    state: State
    error: str | None = None
    log: str | None = None
    scheduler_state: str | None = None
    job_id: str | None = None

    @property
    def index(self) -> int:
        return self.configuration.index

    @property
    def run_id(self) -> str:
        return self.configuration.run_id

    def as_dict(self) -> dict:
        """The configuration's fields, then its state: one flat record per configuration (``status --json``)."""
        return {**self.configuration.as_dict(), "state": self.state.value, "error": self.error, "log": self.log,
                "scheduler_state": self.scheduler_state, "job_id": self.job_id}


@dataclass
class JobStatus:
    """One submitted Slurm job (the extraction job or array, a training array, the collect job) as Slurm sees it now:
    where a sweep is in its chain, and why a job waits."""

    kind: str
    name: str
    job_id: str
    tasks: int
    counts: dict[State, int]
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
    clips: dict[str, int] | None = None  # {"stored", "total"} of the clip store; None before the clip store

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(c.state for c in self.configurations)
        return {state.value: found[state] for state in State if found[state]}

    def as_dict(self) -> dict:
        return {"run_dir": self.run_dir, "runs": self.runs, "counts": self.counts, "problems": self.problems,
                "warnings": self.warnings, "accounting": self.accounting, "clips": self.clips,
                "jobs": [asdict(j) for j in self.jobs],
                "configurations": [c.as_dict() for c in self.configurations]}


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
    if ended is State.missing:
        return "CANCELLED before it started (accounting is off; the task left no files)"
    if ended is None:
        return "FAILED (accounting is off; the task ended without a result or a message from Slurm)"
    return f"{ended.value.upper()} (accounting is off; from the task's own files)"


def _raw_state(view: slurm_state.SchedulerView, run_dir: RunDir, key: Key) -> str | None:
    """Slurm's word for one task, or what stands in for it when Slurm does not list the task."""
    return view.states.get(key) or _without_record(run_dir, key, key[1] is not None and key[0] in view.jobs,
                                                   view.accounting)


def _keys(entry: dict) -> list[Key]:
    """The Slurm tasks of one submitted job: each array task, or the job itself."""
    return [(entry["job_id"], k) for k in range(len(entry["tasks"]))] if entry["array"] else [(entry["job_id"], None)]


def _job_status(entry: dict, view: slurm_state.SchedulerView, run_dir: RunDir) -> JobStatus:
    keys = _keys(entry)
    counts: Counter = Counter()
    waiting = []
    for key in keys:
        raw = _raw_state(view, run_dir, key)
        state = slurm_state.normalize(raw) if raw is not None else State.unknown
        counts[state] += 1
        if raw is not None and state is State.pending and raw.endswith(")") and "(" in raw:
            waiting.append(raw[raw.index("(") + 1:-1])
    return JobStatus(entry["kind"], entry["name"], entry["job_id"], len(keys),
                     {state: counts[state] for state in State if counts[state]}, sorted(set(waiting)))


def _slurm_log(run_dir: RunDir, job: Key) -> str | None:
    """The task's stderr as submitit lays it out, if the task ever started."""
    task_dir = job_files.folder(run_dir.submitit, *job)
    path = task_dir / f"{task_dir.name}_0_log.err"
    return str(path) if path.exists() else None


def clip_progress(manifest: Manifest, problems: list[str]) -> dict[str, int] | None:
    """How many of the sweep's distinct clips the clip store holds: its index names only this sweep's clips, one
    per distinct file content and extraction setting (a crop-mode axis stores each file once per mode), so
    counting them needs neither the data nor the clip keys. None for a run directory submitted before the clip
    store (no clip fingerprints)."""
    content = manifest.record.clip_content
    if not content:
        return None
    stored = 0
    try:
        stored = len(json.loads(manifest.run_dir.clip_index.read_text())["clips"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as err:
        problems.append(f"{manifest.run_dir.clip_index}: unreadable clip store index ({err})")
    distinct = {(content.get(str(Path(path))), json.dumps(spec.extraction or {}, sort_keys=True))
                for spec in manifest.units.values() for path in (*spec.positives, *spec.negatives)}
    return {"stored": stored, "total": len(distinct)}


def status(run_dir: Path, manifest: Manifest | None = None, query: Query = slurm_state.query) -> StatusReport:
    """Per-configuration states from the result files, and from Slurm for submitted runs (one ``query`` for
    all jobs; without accounting, the tasks' own files). ``manifest``: when the caller holds it already."""
    manifest = manifest or load(RunDir(Path(run_dir)))
    on_cpu: list[str] = []

    def seen_result(run_id: str, record: dict) -> None:
        if unused_gpu(record):
            on_cpu.append(run_id)

    states, problems = run_states(manifest.run_dir, (c.run_id for c in manifest.runs), seen_result)
    entries = read_submissions(manifest.run_dir)
    tasks = latest_tasks(entries)
    view: slurm_state.SchedulerView | None = None
    if entries:
        try:
            view = query([entry["job_id"] for entry in entries])
        except slurm_state.SchedulerUnavailable as err:
            problems.append(f"Slurm states unknown: {err}")
    for entry in (entry for entry in entries if entry["kind"] == "embed" and view is not None):
        for key in _keys(entry):
            raw = _raw_state(view, manifest.run_dir, key)
            if raw and slurm_state.normalize(raw) not in (*ACTIVE, State.completed):
                name = entry["name"] + (f" task {key[1]}, clips {entry['tasks'][key[1]][0]}" if key[1] is not None
                                        else "")
                problems.append(f"embedding job {entry['job_id']} ({name}) ended {raw}: its training arrays do "
                                f"not run; log {_slurm_log(manifest.run_dir, key)}")
    rows = []
    for config in manifest.configurations:
        outcome = states[config.run_id]
        state, error, log = outcome.state, outcome.error, outcome.log
        job = tasks.get(config.run_id)
        raw = _raw_state(view, manifest.run_dir, job) if job and view is not None else None
        if job and raw is None and state is not State.completed and view is not None:
            error = error or "no Slurm record yet (accounting lists ended jobs a few seconds late)"
        if raw and state is not State.completed:
            slurm = slurm_state.normalize(raw)
            if slurm is State.completed:
                state, error = State.failed, error or "the task ended without writing a result"
            else:
                state = slurm
            if state not in ACTIVE:
                log = log or _slurm_log(manifest.run_dir, job)
        rows.append(ConfigurationStatus(config, state, error, log, raw,
                                        (job[0] if job[1] is None else f"{job[0]}_{job[1]}") if job else None))
    jobs = [_job_status(entry, view, manifest.run_dir) for entry in entries] if view else []
    warnings = [unused_gpu_warning(on_cpu)] if on_cpu else []
    return StatusReport(str(manifest.run_dir.path), rows, len(manifest.runs), problems, jobs, warnings,
                        view.accounting if view else None, clip_progress(manifest, problems))
