"""Slurm's view of submitted jobs: one ``squeue`` and one ``sacct`` call for all of a run directory's jobs,
never one per task. ``squeue -t all`` also lists tasks that ended less than ``MinJobAge`` ago; without
accounting (sacct disabled) nothing older is known, and the tasks' own files must say (``job_files``).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import cached_property

from hpc_radr.errors import HpcRadrError
from hpc_radr.results import State

# Slurm state (first word) -> hpc-radr state. PREEMPTED and REQUEUED tasks come back: not done.
_STATES = {
    **dict.fromkeys(("PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "PREEMPTED", "RESV_DEL_HOLD",
                     "SUSPENDED"), State.pending),
    **dict.fromkeys(("RUNNING", "COMPLETING", "CONFIGURING", "RESIZING", "SIGNALING", "STAGE_OUT"), State.running),
    "COMPLETED": State.completed,
    **dict.fromkeys(("FAILED", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"), State.failed),
    "CANCELLED": State.cancelled, "REVOKED": State.cancelled,
    "TIMEOUT": State.timeout,
    "OUT_OF_MEMORY": State.out_of_memory,
}


class SchedulerUnavailable(HpcRadrError, RuntimeError):
    """Neither sacct nor squeue answered."""


def normalize(slurm_state: str) -> State:
    """'CANCELLED by 0' -> 'cancelled'; unknown states count as running so nothing is resubmitted twice."""
    return _STATES.get(slurm_state.split()[0].rstrip("+") if slurm_state.strip() else "", State.running)


def _expand(job_id: str) -> list[tuple[str, int | None]]:
    """'12_3' -> [('12', 3)]; '12_[0-2,5%4]' -> tasks 0,1,2,5; '12' -> [('12', None)]."""
    base, _, suffix = job_id.partition("_")
    if not suffix:
        return [(base, None)]
    if not suffix.startswith("["):
        return [(base, int(suffix))] if suffix.isdigit() else []
    tasks = []
    for part in suffix.strip("[]").split("%")[0].split(","):
        low, _, high = part.partition("-")
        if low.isdigit():
            tasks += [(base, k) for k in range(int(low), int(high or low) + 1)]
    return tasks


def parse(lines: str) -> dict[tuple[str, int | None], str]:
    """'JobID|State[|Reason]' lines (sacct -P or squeue) -> {(job, task): raw Slurm state}; job steps ignored.
    A pending task's reason is kept in brackets ('PENDING (Dependency)'): why it waits is what users ask."""
    states: dict[tuple[str, int | None], str] = {}
    for line in lines.splitlines():
        job_id, _, rest = line.strip().partition("|")
        if not job_id or "." in job_id:
            continue
        state, _, reason = (part.strip() for part in rest.partition("|"))
        if reason and reason != "None" and normalize(state) is State.pending:
            state = f"{state} ({reason})"
        for key in _expand(job_id):
            states[key] = state
    return states


def _run(command: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise SchedulerUnavailable(f"{command[0]} not found: not a Slurm node") from None


@dataclass(frozen=True)
class SchedulerView:
    """Raw Slurm state per (job, array task), and whether accounting answered (else ended tasks older than
    MinJobAge are simply absent)."""

    states: dict[tuple[str, int | None], str]
    accounting: bool

    @cached_property
    def jobs(self) -> frozenset[str]:
        """The job ids Slurm still lists (any of their tasks)."""
        return frozenset(job for job, _ in self.states)


def accounting_disabled(sacct_stderr: str) -> bool:
    return "accounting storage is disabled" in sacct_stderr.lower()


def query(job_ids: list[str]) -> SchedulerView:
    """Raw Slurm state of every task of ``job_ids``: one squeue call (queued, running and recently ended tasks,
    which sacct may not list yet) and one sacct call (ended tasks); squeue wins where both answer."""
    if not job_ids:
        return SchedulerView({}, True)
    joined = ",".join(sorted(set(job_ids)))
    ended = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", joined])
    active = _run(["squeue", "--array", "-h", "-t", "all", "-o", "%i|%T|%r", "-j", joined])
    if active.returncode != 0 and "Invalid job id" not in active.stderr:
        reason = (active.stderr.strip().splitlines() or ["no output"])[-1]
        raise SchedulerUnavailable(f"squeue failed: {reason} (is SLURM_CONF set?)")
    states = parse(ended.stdout) if ended.returncode == 0 else {}
    states.update(parse(active.stdout))
    return SchedulerView(states, not (ended.returncode != 0 and accounting_disabled(ended.stderr)))
