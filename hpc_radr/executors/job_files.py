"""How a Slurm task ended, read from its own files: for clusters without accounting, where a finished job
leaves ``squeue`` after ``MinJobAge`` (300 s by default) and nothing else remembers it.

submitit makes a folder ``submitit/<job>[_<task>]/`` for every task when it submits (holding the pickled call);
a task that started also has its logs there. Its result pickle says whether the function returned or raised; a
task killed before it could write one (cancelled, out of time or memory, preempted) has only its log, where
``slurmstepd`` writes why. A task without logs never started.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from hpc_radr.results import State

# slurmstepd's lines in a killed task's stderr, most specific first -> hpc-radr state.
_MARKERS = (
    (re.compile(r"\*\*\* (JOB|STEP) \S+ ON \S+ CANCELLED AT \S+ DUE TO TIME LIMIT"), State.timeout),
    (re.compile(r"\*\*\* (JOB|STEP) \S+ ON \S+ CANCELLED AT \S+ DUE TO PREEMPTION"), State.cancelled),
    (re.compile(r"\*\*\* (JOB|STEP) \S+ ON \S+ CANCELLED AT \S+ DUE TO NODE FAIL"), State.failed),
    (re.compile(r"oom-kill|Exceeded job memory limit|Out Of Memory", re.IGNORECASE), State.out_of_memory),
    (re.compile(r"\*\*\* (JOB|STEP) \S+ ON \S+ CANCELLED AT"), State.cancelled),
)
TAIL_BYTES = 64 * 1024  # slurmstepd writes at the end; a long log is not read whole


def folder(submitit_dir: Path, job_id: str, task: int | None) -> Path:
    name = job_id if task is None else f"{job_id}_{task}"
    return submitit_dir / name


def from_log(text: str) -> State | None:
    """The state slurmstepd's last words in a task's stderr name, if any."""
    for pattern, state in _MARKERS:
        if pattern.search(text):
            return state
    return None


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def ended(task_dir: Path) -> State | None:
    """completed / failed / cancelled / timeout / out_of_memory from a task's folder; ``missing`` when the task
    never started (no logs); None when it started and its files do not say how it ended (it may still run)."""
    name = task_dir.name
    result, log = task_dir / f"{name}_0_result.pkl", task_dir / f"{name}_0_log.err"
    if not (result.exists() or log.exists() or (task_dir / f"{name}_0_log.out").exists()):
        return State.missing
    if result.exists():
        try:
            with result.open("rb") as handle:
                outcome = pickle.load(handle)  # written by this run directory's own task
        except Exception:  # a torn or foreign pickle says nothing: fall back to the log
            outcome = None
        if isinstance(outcome, tuple) and outcome and outcome[0] in ("success", "error"):
            return State.completed if outcome[0] == "success" else State.failed
    return from_log(_tail(log))
