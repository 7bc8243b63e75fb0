"""Submitting a sweep to Slurm through submitit: embedding jobs, training arrays, a collect job.

The chain: one embedding job per unit whose cache is missing; then training arrays (``--array=0-N%P``,
split to respect the cluster's MaxArraySize) that start only after every embedding job succeeded
(``afterok``, and ``kill-on-invalid-dep`` so a failed extraction cancels the arrays instead of letting
every task fail on its own); then a collect job once the arrays have ended (``afterany``).
Array task k of an array trains the k-th entry of that array's task list, recorded in ``submissions.jsonl``
so that status and resubmit can map Slurm's tasks back to runs. ``submit`` returns at once.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from hpc_radr import runner
from hpc_radr.manifest import RunDirError
from hpc_radr.submission import Work, record_submission

# Measured peaks (benchmarks/results/latest.md, "Peak memory"): a training task 0.8 GB (1.1 GB with 15,000
# embeddings), an extraction task with 4 workers 1.4 GB PSS / 2.8 GB RSS. 4 GB leaves room for TensorFlow's
# CUDA libraries on GPU nodes, which the CPU-only measurement does not include.
DEFAULT_MEM_GB = 4


class SlurmError(RuntimeError):
    """Slurm refused something; the message carries sbatch's or scontrol's own words."""


@dataclass(frozen=True)
class SlurmOptions:
    """What users choose per submission; defaults suit one small training per task."""

    partition: str | None = None
    gpus_per_task: int | None = None  # None: 1 on partitions named like "gpu", else 0
    cpus_per_task: int = 2
    mem_gb: float = DEFAULT_MEM_GB
    time_min: int = 60
    account: str | None = None
    qos: str | None = None
    array_parallelism: int = 32
    runs_per_task: int = 1
    embed_cpus: int = 4
    embed_time_min: int = 120
    extra_sbatch: dict[str, str | bool] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    max_timeouts: int = 3

    @property
    def gpus(self) -> int:
        if self.gpus_per_task is not None:
            return self.gpus_per_task
        return 1 if self.partition and "gpu" in self.partition.lower() else 0


@dataclass
class PlannedJob:
    """One sbatch submission: an embedding job, a training array, or the collect job."""

    kind: str
    name: str
    tasks: list[list[str]]  # per array task: run ids (train) or unit names (embed); [[]] for collect
    parameters: dict
    after_ok: list[str] = field(default_factory=list)  # names of planned jobs
    after_any: list[str] = field(default_factory=list)
    job_id: str | None = None
    script: str = ""


def max_array_size() -> int:
    """The cluster's MaxArraySize (the largest array index plus one)."""
    try:
        done = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise SlurmError("scontrol not found: is this a Slurm login node? (use --executor local here)") from None
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not match:
        raise SlurmError(f"cannot read MaxArraySize from `scontrol show config`: {done.stderr.strip()}")
    return int(match.group(1))


def one_line(what: str, value: str, allowed: str = "") -> str:
    """``value`` if it fits on one line of a job script; a newline there would end an ``#SBATCH`` line early and
    make the rest of the value a directive or a command of its own, so control characters are refused."""
    for char in value:
        if unicodedata.category(char) == "Cc" and char not in allowed:
            raise RunDirError(f"{what} {value!r} contains the control character {char!r}, which cannot be "
                              "written on one line of an sbatch script; choose a value without it")
    return value


def check_script_values(run_dir: Path, options: SlurmOptions) -> None:
    """Refuse, before anything is written, values that cannot be put in a job script as given."""
    one_line("run directory", str(run_dir))
    if "\\" in str(run_dir):
        raise RunDirError(f"run directory {str(run_dir)!r} contains a backslash: sbatch reads it as an escape in "
                          "the log file names of #SBATCH lines; use a run directory without one")
    for what, value in (("--partition", options.partition), ("--account", options.account), ("--qos", options.qos),
                        *((f"--sbatch {key}", value) for key, value in options.extra_sbatch.items()
                          if isinstance(value, str))):
        if value:
            one_line(what, value)
    for line in options.setup:
        one_line("--setup line (give each line its own --setup)", line, allowed="\t")


def _mem(gb: float) -> str:
    return f"{round(gb * 1024)}M"


def _base_parameters(options: SlurmOptions, name: str) -> dict:
    params: dict = {"job_name": name, "signal_delay_s": 120, "additional_parameters": dict(options.extra_sbatch)}
    for key, value in (("partition", options.partition), ("account", options.account), ("qos", options.qos)):
        if value:
            params[key] = value
    if options.setup:
        params["setup"] = list(options.setup)
    return params


def plan_jobs(work: Work, options: SlurmOptions, array_limit: int) -> list[PlannedJob]:
    """The jobs a submission makes, in submission order, with their dependencies by name."""
    jobs: list[PlannedJob] = []
    name = work.manifest.sweep.name
    for unit in work.missing_units:
        params = _base_parameters(options, f"{name}-embed")
        params.update(cpus_per_task=options.embed_cpus, mem=_mem(max(options.mem_gb, 4)), time=options.embed_time_min)
        jobs.append(PlannedJob("embed", f"embed:{unit}", [[unit]], params))
    embeds = [job.name for job in jobs]

    per_task = max(1, options.runs_per_task)
    tasks = [work.pending_runs[k:k + per_task] for k in range(0, len(work.pending_runs), per_task)]
    arrays = []
    for part, start in enumerate(range(0, len(tasks), array_limit)):
        params = _base_parameters(options, f"{name}-train")
        params.update(cpus_per_task=options.cpus_per_task, mem=_mem(options.mem_gb), time=options.time_min,
                      array_parallelism=options.array_parallelism)
        if options.gpus:
            params["gpus_per_node"] = options.gpus
        if embeds:
            params["additional_parameters"]["kill-on-invalid-dep"] = "yes"
        job = PlannedJob("train", f"train:{part}", tasks[start:start + array_limit], params, after_ok=embeds)
        jobs.append(job)
        arrays.append(job.name)
    if arrays:
        params = _base_parameters(options, f"{name}-collect")
        params.update(cpus_per_task=1, mem=_mem(2), time=30)
        jobs.append(PlannedJob("collect", "collect", [[]], params, after_any=arrays))
    return jobs


def _dependency(job: PlannedJob, ids: dict[str, str]) -> str | None:
    parts = []
    if job.after_ok:
        parts.append("afterok:" + ":".join(ids[n] for n in job.after_ok))
    if job.after_any:
        parts.append("afterany:" + ":".join(ids[n] for n in job.after_any))
    return ",".join(parts) or None


def _executor(run_dir: Path, job: PlannedJob, options: SlurmOptions, ids: dict[str, str]) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(folder=run_dir / "submitit" / "%j", max_num_timeout=options.max_timeouts)
    params = dict(job.parameters)
    dependency = _dependency(job, ids)
    if dependency:
        params["dependency"] = dependency
    executor.update_parameters(**params)
    return executor


def render(executor: submitit.SlurmExecutor, array_size: int) -> str:
    """The sbatch script submitit would write for this executor (its own renderer, array size included)."""
    params = dict(executor.parameters)
    if array_size > 1:
        params["map_count"] = array_size
    probe = submitit.SlurmExecutor(folder=executor.folder)
    probe.parameters.update(params)
    return probe._make_submission_file_text(executor._submitit_command_str, "dry-run")


def _calls(job: PlannedJob, run_dir: Path, force: bool, threads: int) -> list[tuple]:
    if job.kind == "embed":
        return [(runner.embed, run_dir, job.tasks[0], None)]
    if job.kind == "train":
        return [(runner.TrainTask(), run_dir, run_ids, force, threads) for run_ids in job.tasks]
    return [(runner.collect_task, run_dir)]


def check_with_sbatch(jobs: list[PlannedJob]) -> None:
    """Ask Slurm to validate each script (``sbatch --test-only``) before anything is submitted."""
    for job in jobs:
        test = re.sub(r"^#SBATCH --dependency=.*\n", "", job.script, flags=re.MULTILINE)
        done = subprocess.run(["sbatch", "--test-only"], input=test, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise SlurmError(f"Slurm rejected the submission, nothing was submitted:\n{done.stderr.strip()}")


def plan_slurm(work: Work, options: SlurmOptions, array_limit: int | None = None) -> list[PlannedJob]:
    """The chain of jobs for ``work`` with their sbatch scripts (dependencies as placeholders)."""
    run_dir = work.manifest.run_dir.path.resolve()
    check_script_values(run_dir, options)
    jobs = plan_jobs(work, options, array_limit or max_array_size())
    ids = {j.name: f"<job id of {j.name}>" for j in jobs}
    for job in jobs:
        job.script = render(_executor(run_dir, job, options, ids), len(job.tasks))
    return jobs


def submit_jobs(work: Work, jobs: list[PlannedJob], options: SlurmOptions, force: bool = False) -> None:
    """Submit planned jobs in order, recording each in the run directory's submission log."""
    run_dir = work.manifest.run_dir.path.resolve()
    ids: dict[str, str] = {}
    for job in jobs:
        executor = _executor(run_dir, job, options, ids)
        calls = _calls(job, run_dir, force, options.cpus_per_task)
        try:
            if len(calls) == 1:
                submitted = [executor.submit(*calls[0])]
            else:
                with executor.batch():
                    submitted = [executor.submit(*call) for call in calls]
        except Exception as err:  # submitit wraps sbatch's failure; its text is what users need
            done = [j for j in jobs if j.job_id]
            raise SlurmError(f"sbatch failed for {job.name}: {err}\n"
                             f"already submitted: {', '.join(f'{j.name}={j.job_id}' for j in done) or 'nothing'}"
                             ) from None
        job.job_id = submitted[0].job_id.split("_")[0]
        ids[job.name] = job.job_id
        record_submission(work.manifest.run_dir, {"kind": job.kind, "name": job.name, "job_id": job.job_id,
                                                  "array": len(calls) > 1, "tasks": job.tasks})
