"""The chain of Slurm jobs a submission makes, as data: one plan, rendered by submitit (`submit`) and by the
sbatch templates (`scripts`), so both ask Slurm for the same jobs with the same resources.

The chain: one extraction job for the clips the clip store lacks (CPU only: BirdNET's TFLite model), an array of
shards when they are many, each task extracting one range of the sweep's clip list; then training arrays that
start only after every extraction task succeeded (``afterok``, with ``kill-on-invalid-dep`` so a failed extraction
cancels the arrays instead of letting every task fail on its own); then a collect job once the arrays have ended
(``afterany``). Each kind of job has its own partition, CPUs, memory and time.

Shards: ranges of ``--embed-shard-clips`` consecutive clips of the sweep's clip list (``clip_store.sweep_clips``),
only those holding a clip not yet stored; larger ranges when the cluster's MaxArraySize would not index them all.

Arrays and the throttle: a sweep with more tasks than the cluster's MaxArraySize is split into several arrays.
The user's ``--array-parallelism`` is a limit for the whole sweep, not per array: the tasks are laid in
``lanes`` (as many as arrays are needed, at most as many as the throttle), each lane with an equal share of
the tasks and of the throttle; a lane longer than MaxArraySize is a chain of arrays, each waiting for the one
before it (``afterany``). So at no time do more tasks run than asked for, and the lanes drain together. The
extraction array, which ends before any training starts, runs at most that many tasks at once too.

A site's limit on submitted jobs (``MaxSubmitJobsPerUser``, which counts every array task) is met by packing
several runs into each array task, or refused before anything is submitted.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field, replace
from enum import Enum

from hpc_radr.errors import HpcRadrError

# The floor of the training and extraction memory defaults. Measured peaks (benchmarks/results/latest.md, "Peak
# memory"): a training task 0.8 GB (1.1 GB with 15,000 embeddings), an extraction task with 2 workers about
# 1.2 GB. 4 GB leaves room for TensorFlow's CUDA libraries on GPU nodes, which the CPU-only measurement does not
# include. Every default fits a node of 2 CPUs and 8 GB. Larger data gets more (memory_default).
DEFAULT_MEM_GB = 4.0
COLLECT_MEM_GB = 2.0

# Peak memory as a line in the data size, measured (benchmarks/results/data-scale, 2026-12-05): the peak of a
# training task and of collect at 10x and 100x the demo's training size (2,720 and 27,200 clips; 100x: embeddings
# drawn from real ones, 7,200 positives and 20,000 negatives), "samples" being the clips of the sweep's largest
# embedding unit, with the test set growing alongside. Training 855 and 1,342 MB: 800 MB + 0.020 MB per sample;
# collect 299 and 633 MB: 260 MB + 0.014 MB per sample. An extraction task (summed RSS of its processes): 1,757 MB
# with 396 clips and 1,787 MB with 3,960 on 2 CPUs, 2,786 MB on 4 CPUs (benchmarks/results/latest.md): 720 MB
# + 520 MB per CPU (one extraction worker each) + 0.0085 MB per clip of the task.
# HEADROOM multiplies the line: the measurement is CPU-only and on one machine (training on GPU nodes adds CUDA's
# host memory), and a task killed for memory loses its whole run. Extraction's line sums the RSS of its worker
# processes, which counts their shared pages once per worker (a cgroup charges them once: about half, PSS), so it
# needs less. With these, the train default passes its 4 GB floor at about 62,000 clips (230x the demo) and 8 GB
# at about 160,000.
TRAIN_BASE_MB, TRAIN_PER_SAMPLE_MB = 800.0, 0.020
COLLECT_BASE_MB, COLLECT_PER_SAMPLE_MB = 260.0, 0.014
EMBED_BASE_MB, EMBED_PER_CPU_MB, EMBED_PER_CLIP_MB = 720.0, 520.0, 0.0085
HEADROOM = {"train": 2.0, "collect": 2.0, "embed": 1.3}


class PlanError(HpcRadrError, ValueError):
    """Options that cannot make a valid chain of jobs (a value that breaks a job script, a limit not met)."""


class JobKind(str, Enum):
    embed = "embed"
    train = "train"
    collect = "collect"


@dataclass(frozen=True)
class Resources:
    """What one job, or each task of an array, asks Slurm for."""

    partition: str | None
    cpus: int
    mem_gb: float
    time_min: int
    gpus: int = 0

    @property
    def mem(self) -> str:
        """Memory as Slurm's ``--mem`` value."""
        return f"{round(self.mem_gb * 1024)}M"

    def describe(self) -> str:
        where = f"partition {self.partition}" if self.partition else "the default partition"
        gpus = f"{self.gpus} GPU{'s' * (self.gpus != 1)}" if self.gpus else "no GPU"
        return f"{where}, {self.cpus} CPU{'s' * (self.cpus != 1)}, {gpus}, {self.mem} memory, {self.time_min} min"


# The command-line options that change each kind's resources, for messages that say what to change.
OPTIONS: dict[JobKind, dict[str, str]] = {
    JobKind.embed: {"partition": "--embed-partition (or --cpu-partition)", "cpus": "--embed-cpus",
                    "mem": "--embed-mem-gb", "time": "--embed-time-min", "shard": "--embed-shard-clips"},
    JobKind.train: {"partition": "--partition", "cpus": "--cpus-per-task", "gpus": "--gpus-per-task",
                    "mem": "--mem-gb", "time": "--time-min"},
    JobKind.collect: {"partition": "--collect-partition (or --cpu-partition)", "cpus": "--collect-cpus",
                      "mem": "--collect-mem-gb", "time": "--collect-time-min"},
}


# The defaults of each kind (partition and GPUs are resolved in slurm_options); the command line shows these.
# Memory here is each kind's floor: unless given (--mem-gb, --embed-mem-gb, --collect-mem-gb), it grows with the data.
DEFAULTS = {JobKind.train: Resources(None, 2, DEFAULT_MEM_GB, 60),
            JobKind.embed: Resources(None, 2, DEFAULT_MEM_GB, 120),
            JobKind.collect: Resources(None, 1, COLLECT_MEM_GB, 30)}
DEFAULT_THROTTLE = 32
# Clips per extraction task: about 1 minute of extraction on 2 CPUs (62 ms per clip per core), so the TensorFlow
# import (8 s) and the queue wait are a small part of each task; a 40,000-clip sweep is 20 tasks.
DEFAULT_SHARD_CLIPS = 2000
_TRAIN, _EMBED, _COLLECT = DEFAULTS[JobKind.train], DEFAULTS[JobKind.embed], DEFAULTS[JobKind.collect]


def memory_default(kind: JobKind, samples: int, cpus: int = 1, clips_per_task: int = 0) -> float:
    """The memory (GB) a job of ``kind`` asks for when the user gave none: the peak measured for that much data
    (``samples``: clips of the sweep's largest embedding unit; extraction: ``cpus`` workers and
    ``clips_per_task`` clips) times HEADROOM, rounded up to 0.5 GB, never below the kind's floor (DEFAULTS)."""
    if kind is JobKind.train:
        peak_mb = TRAIN_BASE_MB + TRAIN_PER_SAMPLE_MB * samples
    elif kind is JobKind.collect:
        peak_mb = COLLECT_BASE_MB + COLLECT_PER_SAMPLE_MB * samples
    else:
        peak_mb = EMBED_BASE_MB + EMBED_PER_CPU_MB * cpus + EMBED_PER_CLIP_MB * clips_per_task
    wanted = math.ceil(HEADROOM[kind.value] * peak_mb / 1024 * 2) / 2
    return max(DEFAULTS[kind].mem_gb, wanted)


@dataclass(frozen=True)
class SlurmOptions:
    """What users choose per submission, resolved per kind of job. Build it with ``slurm_options``."""

    train: Resources
    embed: Resources
    collect: Resources
    account: str | None = None
    qos: str | None = None
    array_parallelism: int = DEFAULT_THROTTLE
    embed_shard_clips: int = DEFAULT_SHARD_CLIPS
    runs_per_task: int | None = None  # None: 1, or more when a limit on submitted jobs requires it
    extra_sbatch: dict[str, str | bool] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    max_timeouts: int = 3
    # the kinds whose memory the user did not give: plan_jobs sizes them from the data (memory_default)
    mem_from_data: frozenset[JobKind] = frozenset()

    def resources(self, kind: JobKind) -> Resources:
        return {JobKind.embed: self.embed, JobKind.train: self.train, JobKind.collect: self.collect}[kind]

    def sized(self, samples: int, clips_per_task: int) -> SlurmOptions:
        """These options with the memory of every kind in ``mem_from_data`` derived from the data's size."""
        changed = {kind.value: replace(self.resources(kind), mem_gb=memory_default(
            kind, samples, self.resources(kind).cpus, clips_per_task)) for kind in self.mem_from_data}
        return replace(self, **changed)


def slurm_options(partition: str | None = None, gpus: int | None = None, cpus: int = _TRAIN.cpus,
                  mem_gb: float | None = None, time_min: int = _TRAIN.time_min, *,
                  cpu_partition: str | None = None, embed_partition: str | None = None,
                  embed_cpus: int = _EMBED.cpus, embed_mem_gb: float | None = None,
                  embed_time_min: int = _EMBED.time_min, collect_partition: str | None = None,
                  collect_cpus: int = _COLLECT.cpus, collect_mem_gb: float | None = None,
                  collect_time_min: int = _COLLECT.time_min, **site) -> SlurmOptions:
    """Options from the command line's values, with the defaults resolved.

    ``gpus`` None: 1 on a training partition named like "gpu", else 0. CPU-only jobs (embedding, collect) go to
    their own partition, else to ``cpu_partition``, else to the training partition. A memory of None: sized from
    the data when the jobs are planned (at least the kind's floor in DEFAULTS); a given memory always wins."""
    if gpus is None:
        gpus = 1 if partition and "gpu" in partition.lower() else 0
    chosen = {JobKind.train: mem_gb, JobKind.embed: embed_mem_gb, JobKind.collect: collect_mem_gb}
    mem = {kind: DEFAULTS[kind].mem_gb if value is None else value for kind, value in chosen.items()}
    return SlurmOptions(
        train=Resources(partition, cpus, mem[JobKind.train], time_min, gpus),
        embed=Resources(embed_partition or cpu_partition or partition, embed_cpus, mem[JobKind.embed],
                        embed_time_min),
        collect=Resources(collect_partition or cpu_partition or partition, collect_cpus, mem[JobKind.collect],
                          collect_time_min),
        mem_from_data=frozenset(kind for kind, value in chosen.items() if value is None),
        **site)


@dataclass(frozen=True)
class PlannedJob:
    """One sbatch submission: the extraction job (an array when it has several shards), a training array, or the
    collect job."""

    kind: JobKind
    name: str  # unique in the plan: embed, train:<k>, collect
    resources: Resources
    tasks: tuple[tuple[str, ...], ...]  # per task: run ids (train), one clip range "start:stop" (embed); ((),)
    after_ok: tuple[str, ...] = ()  # names of planned jobs
    after_any: tuple[str, ...] = ()
    throttle: int | None = None  # arrays: at most this many tasks at once

    @property
    def is_array(self) -> bool:
        return self.kind is JobKind.train or len(self.tasks) > 1

    @property
    def runs(self) -> list[str]:
        return [run for task in self.tasks for run in task] if self.kind is JobKind.train else []

    def describe(self) -> str:
        """The job and its request, as a rejection message names them."""
        size = f"array of {len(self.tasks)} tasks, each " if self.is_array else ""
        return f"{self.name} ({size}{self.resources.describe()})"


@dataclass(frozen=True)
class JobPlan:
    """The whole chain, in submission order, with what every job of it shares."""

    sweep: str
    jobs: tuple[PlannedJob, ...]
    account: str | None
    qos: str | None
    extra_sbatch: dict[str, str | bool]
    setup: tuple[str, ...]
    runs_per_task: int
    clips_per_task: int  # the size of an extraction shard (the last one of the sweep may be smaller)

    def job_name(self, job: PlannedJob) -> str:
        return f"{self.sweep}-{job.kind.value}"


def one_line(what: str, value: str, allowed: str = "") -> str:
    """``value`` if it fits on one line of a job script; a newline there would end an ``#SBATCH`` line early and
    make the rest of the value a directive or a command of its own, so control characters are refused."""
    for char in value:
        if unicodedata.category(char) == "Cc" and char not in allowed:
            raise PlanError(f"{what} {value!r} contains the control character {char!r}, which cannot be "
                            "written on one line of an sbatch script; choose a value without it")
    return value


def check_values(run_dir: str, options: SlurmOptions) -> None:
    """Refuse, before anything is written, values that cannot be put in a job script as given."""
    one_line("run directory", run_dir)
    if "\\" in run_dir:
        raise PlanError(f"run directory {run_dir!r} contains a backslash: sbatch reads it as an escape in "
                        "the log file names of #SBATCH lines; use a run directory without one")
    option_of: dict[str | None, str] = {}  # a partition inherited from --partition is named as --partition
    for kind in (JobKind.train, JobKind.embed, JobKind.collect):
        option_of.setdefault(options.resources(kind).partition, OPTIONS[kind]["partition"].split()[0])
    for what, value in (*((what, value) for value, what in option_of.items()), ("--account", options.account),
                        ("--qos", options.qos),
                        *((f"--sbatch {key}", value) for key, value in options.extra_sbatch.items()
                          if isinstance(value, str))):
        if value:
            one_line(what, value)
    for line in options.setup:
        one_line("--setup line (give each line its own --setup)", line, allowed="\t")
    if options.array_parallelism < 1:
        raise PlanError(f"--array-parallelism {options.array_parallelism}: must be at least 1")


def _split(items: list, parts: int) -> list[list]:
    """``items`` in ``parts`` consecutive pieces whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    pieces, start = [], 0
    for k in range(parts):
        end = start + size + (k < extra)
        pieces.append(items[start:end])
        start = end
    return pieces


def _runs_per_task(options: SlurmOptions, runs: int, other_jobs: int, submit_limit: int | None) -> int:
    """Runs per array task: the user's choice, or the fewest that keep the chain within ``submit_limit`` jobs."""
    chosen = options.runs_per_task
    if submit_limit is None or not runs:
        return chosen or 1
    room = submit_limit - other_jobs
    need = math.ceil(runs / room) if room > 0 else None
    if need is None:
        raise PlanError(f"the cluster lets you submit {submit_limit} more jobs (MaxSubmitJobsPerUser of your QOS or "
                        f"account, less the jobs you have queued), and this chain needs {other_jobs} besides its "
                        "training tasks; wait for queued jobs to end, or use a QOS with a higher limit (--qos)")
    if chosen is not None and chosen < need:
        tasks = math.ceil(runs / chosen)
        raise PlanError(f"--runs-per-task {chosen} makes {tasks} training tasks, {tasks + other_jobs} jobs with the "
                        f"rest of the chain, but the cluster lets you submit {submit_limit} more jobs "
                        f"(MaxSubmitJobsPerUser; every array task counts); use --runs-per-task {need} or more, or "
                        "leave it out to pack runs automatically")
    return max(chosen or 1, need)


def clip_range(task: tuple[str, ...]) -> tuple[int, int]:
    """The (start, stop) positions of an extraction task's range of the sweep's clip list."""
    start, stop = task[0].split(":")
    return int(start), int(stop)


def shards(missing_clips: list[int], clip_count: int, shard_clips: int,
           array_limit: int | None = None) -> tuple[int, list[tuple[int, int]]]:
    """(clips per shard, the shards holding a missing clip as (start, stop)). With ``array_limit``, a sweep with
    more shards than MaxArraySize gets larger ones: every shard's number must be an index of one array."""
    if shard_clips < 1:
        raise PlanError(f"--embed-shard-clips {shard_clips}: must be at least 1")
    size = max(shard_clips, math.ceil(clip_count / array_limit)) if array_limit else shard_clips
    firsts = sorted({position // size * size for position in missing_clips})
    return size, [(start, min(start + size, clip_count)) for start in firsts]


def plan_jobs(sweep: str, missing_clips: list[int], clip_count: int, runs: list[str], options: SlurmOptions,
              array_limit: int, submit_limit: int | None = None, samples: int = 0) -> JobPlan:
    """The jobs that extract the clips at positions ``missing_clips`` of the sweep's ``clip_count`` clips, train
    ``runs`` and collect, in submission order.

    ``array_limit`` is the cluster's MaxArraySize (the largest array index plus one); ``submit_limit`` how many
    more jobs the user may submit (None: no limit known); ``samples`` the clips of the sweep's largest embedding
    unit, which sizes the memory the user did not give (``SlurmOptions.sized``)."""
    if array_limit < 1:
        raise PlanError(f"MaxArraySize {array_limit}: must be at least 1")
    size, found = shards(missing_clips, clip_count, options.embed_shard_clips, array_limit)
    options = options.sized(samples, min(size, clip_count))
    jobs: list[PlannedJob] = []
    if found:
        ranges = tuple((f"{start}:{stop}",) for start, stop in found)
        jobs.append(PlannedJob(JobKind.embed, "embed", options.embed, ranges,
                               throttle=min(options.array_parallelism, len(ranges)) if len(ranges) > 1 else None))
    embeds = tuple(job.name for job in jobs)
    per_task = _runs_per_task(options, len(runs), len(found) + (1 if runs else 0), submit_limit)
    tasks = [tuple(runs[k:k + per_task]) for k in range(0, len(runs), per_task)]
    arrays: list[PlannedJob] = []
    if tasks:
        # as few lanes as arrays are needed, at most one per throttle slot; each lane gets an equal share of
        # the tasks (cut into arrays of at most array_limit) and of the throttle, so all lanes drain together
        lanes = min(math.ceil(len(tasks) / array_limit), options.array_parallelism)
        shares = [len(share) for share in _split(list(range(options.array_parallelism)), lanes)]
        for lane, group in enumerate(_split(tasks, lanes)):
            before: tuple[str, ...] = ()
            for piece in _split(group, math.ceil(len(group) / array_limit)):
                job = PlannedJob(JobKind.train, f"train:{len(arrays)}", options.train, tuple(piece),
                                 after_ok=embeds, after_any=before, throttle=min(shares[lane], len(piece)))
                arrays.append(job)
                before = (job.name,)
        jobs += arrays
        jobs.append(PlannedJob(JobKind.collect, "collect", options.collect, ((),),
                               after_any=tuple(job.name for job in arrays)))
    return JobPlan(sweep, tuple(jobs), options.account, options.qos, dict(options.extra_sbatch),
                   tuple(options.setup), per_task, size)
