"""A job plan rendered and submitted through submitit: one executor per planned job, arrays by ``batch()``.

Array task k of an array trains (or extracts) the k-th entry of that array's task list, recorded in
``submissions.jsonl`` so that status and resubmit can map Slurm's tasks back to runs. ``submit`` returns at
once; nothing waits for jobs.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import submitit

from hpc_radr import runner
from hpc_radr.errors import HpcRadrError
from hpc_radr.job_plan import OPTIONS, JobKind, JobPlan, PlannedJob, clip_range

# Seconds before the time limit at which Slurm signals a task, so submitit can requeue it.
SIGNAL_DELAY_S = 120


class SlurmError(HpcRadrError, RuntimeError):
    """Slurm refused something; the message carries sbatch's or scontrol's own words."""


def _dependency(job: PlannedJob, ids: dict[str, str]) -> str | None:
    parts = []
    if job.after_ok:
        parts.append("afterok:" + ":".join(ids[n] for n in job.after_ok))
    if job.after_any:
        parts.append("afterany:" + ":".join(ids[n] for n in job.after_any))
    return ",".join(parts) or None


def parameters(plan: JobPlan, job: PlannedJob, ids: dict[str, str]) -> dict:
    """submitit's SlurmExecutor parameters for one planned job (``ids``: job ids of the jobs it waits for)."""
    res = job.resources
    params: dict = {"job_name": plan.job_name(job), "signal_delay_s": SIGNAL_DELAY_S, "cpus_per_task": res.cpus,
                    "mem": res.mem, "time": res.time_min, "additional_parameters": dict(plan.extra_sbatch)}
    for key, value in (("partition", res.partition), ("account", plan.account), ("qos", plan.qos)):
        if value:
            params[key] = value
    if res.gpus:
        params["gpus_per_node"] = res.gpus
    if job.throttle:
        params["array_parallelism"] = job.throttle
    if job.after_ok:
        params["additional_parameters"]["kill-on-invalid-dep"] = "yes"
    if plan.setup:
        params["setup"] = list(plan.setup)
    dependency = _dependency(job, ids)
    if dependency:
        params["dependency"] = dependency
    return params


def _executor(run_dir: Path, plan: JobPlan, job: PlannedJob, ids: dict[str, str],
              max_timeouts: int) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(folder=run_dir / "submitit" / "%j", max_num_timeout=max_timeouts)
    executor.update_parameters(**parameters(plan, job, ids))
    return executor


def render(executor: submitit.SlurmExecutor, array_size: int) -> str:
    """The sbatch script submitit would write for this executor (its own renderer, array size included)."""
    params = dict(executor.parameters)
    if array_size > 1:
        params["map_count"] = array_size
    probe = submitit.SlurmExecutor(folder=executor.folder)
    probe.parameters.update(params)
    return probe._make_submission_file_text(executor._submitit_command_str, "dry-run")


def scripts(plan: JobPlan, run_dir: Path) -> dict[str, str]:
    """Job name -> the sbatch script submitit writes for it (dependencies on job ids as placeholders)."""
    ids = {job.name: f"<job id of {job.name}>" for job in plan.jobs}
    return {job.name: render(_executor(run_dir, plan, job, ids, 0), len(job.tasks)) for job in plan.jobs}


def check_with_sbatch(plan: JobPlan, rendered: dict[str, str]) -> None:
    """Ask Slurm to validate each job (``sbatch --test-only``) before anything is submitted; a refusal names the
    job, what it asked for and the options that change it, with Slurm's own words."""
    for job in plan.jobs:
        test = re.sub(r"^#SBATCH --dependency=.*\n", "", rendered[job.name], flags=re.MULTILINE)
        done = subprocess.run(["sbatch", "--test-only"], input=test, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise SlurmError(rejection(job, done.stderr) + "; nothing was submitted")


def rejection(job: PlannedJob, slurm_says: str) -> str:
    """Slurm's refusal of ``job`` as one message: the job, its request, Slurm's words, the options to change."""
    words = " ".join(line.strip() for line in slurm_says.strip().splitlines()) or "no message"
    options = ", ".join(OPTIONS[job.kind].values())
    shared = "--account, --qos, --sbatch"
    return (f"Slurm rejected {job.describe()}: {words}. Change its request with {options} (or {shared} for "
            "every job)")


def _calls(job: PlannedJob, run_dir: Path, force: bool) -> list[tuple]:
    if job.kind is JobKind.embed:
        return [(runner.embed, run_dir, [clip_range(task)], None) for task in job.tasks]
    if job.kind is JobKind.train:
        return [(runner.TrainTask(), run_dir, list(run_ids), force, job.resources.cpus) for run_ids in job.tasks]
    return [(runner.collect_task, run_dir)]


def submit(plan: JobPlan, run_dir: Path, force: bool, max_timeouts: int,
           record: Callable[[PlannedJob, str, bool], None]) -> dict[str, str]:
    """Submit the planned jobs in order; ``record(job, job_id, is_array)`` is called as each is accepted.

    If Slurm refuses a job half-way, the jobs of this chain already submitted are cancelled, so nothing of a
    refused chain runs; the error says which were."""
    ids: dict[str, str] = {}
    for job in plan.jobs:
        executor = _executor(run_dir, plan, job, ids, max_timeouts)
        calls = _calls(job, run_dir, force)
        try:
            if len(calls) == 1:
                submitted = [executor.submit(*calls[0])]
            else:
                with executor.batch():
                    submitted = [executor.submit(*call) for call in calls]
        except Exception as err:  # submitit wraps sbatch's failure; its text is what users need
            cancelled = _cancel(list(ids.values()))
            raise SlurmError(f"{rejection(job, str(err))}; {cancelled}") from None
        ids[job.name] = submitted[0].job_id.split("_")[0]
        record(job, ids[job.name], len(calls) > 1)
    return ids


def _cancel(job_ids: list[str]) -> str:
    if not job_ids:
        return "nothing was submitted"
    done = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return (f"the jobs submitted before it ({', '.join(job_ids)}) could not be cancelled "
                f"({done.stderr.strip()}): cancel them with scancel")
    return f"the jobs submitted before it ({', '.join(job_ids)}) were cancelled"
