"""Submitting a frozen sweep, the same way for every command that does (`submit`, `resubmit`, `demo`).

The order is what keeps bad input from losing anything: check every value that goes into a job script, read
the cluster's limits, plan the chain, ask Slurm to validate every job (``sbatch --test-only``) and check that the
run directory can be written, and only then freeze the manifest and submit, under a lock, planning again
there since a concurrent submission may have taken some runs. A dry run stops before the checks that need
the cluster's verdict and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hpc_radr import runner
from hpc_radr.atomic import write_json
from hpc_radr.clip_store import clip_keys, sweep_clips
from hpc_radr.estimate import Calibration, Capacity, Estimate, calibrate_from_run_dir, estimate, samples_per_epoch
from hpc_radr.executors import local, slurm, slurm_site
from hpc_radr.job_plan import (
    DEFAULT_SHARD_CLIPS,
    JobKind,
    JobPlan,
    PlannedJob,
    SlurmOptions,
    check_values,
    clip_range,
    plan_jobs,
    shards,
)
from hpc_radr.manifest import Manifest, ManifestRecord, freeze, load, unit_name
from hpc_radr.results import ACTIVE
from hpc_radr.run_dir import RunDir
from hpc_radr.status import status
from hpc_radr.storage import check_writable
from hpc_radr.submission import Work, largest_unit, remaining, submission_lock
from hpc_radr.submission_log import record_submission
from hpc_radr.sweep import training_for, unique_runs


@dataclass
class SlurmSubmission:
    """What a Slurm submission did (or, as a dry run, would do)."""

    run_dir: Path
    dry_run: bool
    work: Work
    plan: JobPlan
    scripts: dict[str, str]  # job name -> sbatch script as submitit writes it
    job_ids: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # how the plan was fitted to the cluster's limits


def active_runs(manifest: Manifest) -> set[str]:
    """Runs whose latest Slurm task is still queued or running: never submitted twice."""
    report = status(manifest.run_dir.path, manifest)
    return {c.run_id for c in report.configurations if c.state in ACTIVE}


def _notes(plan: JobPlan, options: SlurmOptions, site: slurm_site.Site) -> list[str]:
    notes = []
    if plan.runs_per_task > (options.runs_per_task or 1):
        notes.append(f"{plan.runs_per_task} runs per training task: the cluster lets you submit {site.submit_limit} "
                     "more jobs (MaxSubmitJobsPerUser; every array task counts)")
    embeds = [job for job in plan.jobs if job.kind is JobKind.embed]
    if embeds and plan.clips_per_task > options.embed_shard_clips:
        notes.append(f"{plan.clips_per_task} clips per extraction task, not {options.embed_shard_clips} "
                     f"(--embed-shard-clips): the cluster's MaxArraySize {site.max_array_size} caps the array's tasks")
    arrays = [job for job in plan.jobs if job.kind is JobKind.train]
    if len(arrays) > 1:
        notes.append(f"{len(arrays)} training arrays (MaxArraySize {site.max_array_size}); together they run at most "
                     f"{options.array_parallelism} tasks at once (--array-parallelism)")
    return notes


def submit_slurm(manifest: Manifest, options: SlurmOptions, force: bool = False, dry_run: bool = False,
                 site: slurm_site.Site | None = None) -> SlurmSubmission:
    """Plan the chain for what remains of ``manifest``, validate it with Slurm, freeze and submit it.

    ``site`` (the cluster's limits) is read from the cluster unless given."""
    run_dir = manifest.run_dir.path.resolve()
    check_values(str(run_dir), options)
    fallback = None
    if site is None:
        try:
            site = slurm_site.query(options.qos)
        except slurm_site.SiteUnreadable as err:
            if not dry_run:
                raise
            # a dry run shows the chain from anywhere (a laptop before copying to the cluster)
            site = slurm_site.Site(slurm_site.DEFAULT_MAX_ARRAY_SIZE, True, None)
            fallback = (f"no Slurm cluster answered here ({err}): planned with Slurm's defaults (MaxArraySize "
                        f"{site.max_array_size}, no limit on submitted jobs); run it on the login node to see "
                        "the cluster's own")

    def planned() -> tuple[Work, JobPlan]:
        frozen = manifest.run_dir.manifest.exists()
        work = remaining(manifest, force, exclude=active_runs(manifest) if frozen else set())
        plan = plan_jobs(manifest.sweep.name, work.missing_clips, work.clip_count, work.pending_runs, options,
                         site.max_array_size, site.submit_limit, samples=largest_unit(manifest))
        return work, plan

    work, plan = planned()
    rendered = slurm.scripts(plan, run_dir)
    outcome = SlurmSubmission(run_dir, dry_run, work, plan, rendered,
                              notes=[*([fallback] if fallback else []), *_notes(plan, options, site)])
    if dry_run or not plan.jobs:
        return outcome
    check_writable(manifest.run_dir.path)  # a read-only or full run directory would fail the tasks after queueing
    slurm.check_with_sbatch(plan, rendered)  # Slurm's own verdict before anything is written or submitted
    freeze(manifest)
    with submission_lock(manifest.run_dir):
        work, plan = planned()

        def record(job: PlannedJob, job_id: str, array: bool) -> None:
            record_submission(manifest.run_dir, {"kind": job.kind.value, "name": job.name, "job_id": job_id,
                                                 "array": array, "tasks": [list(t) for t in job.tasks]})

        outcome.work, outcome.plan = work, plan
        outcome.scripts = slurm.scripts(plan, run_dir)
        outcome.job_ids = slurm.submit(plan, run_dir, force, options.max_timeouts, record)
    return outcome


def run_local(manifest: Manifest, workers: int, force: bool = False, progress: local.Progress | None = None,
              starting: Callable[[Work], None] | None = None,
              shard_clips: int = DEFAULT_SHARD_CLIPS) -> local.LocalOutcome:
    """Freeze the manifest and extract and train what remains on this machine, blocking until done;
    ``starting(work)`` is told what will run before it starts."""
    check_writable(manifest.run_dir.path)  # before anything is written or trained
    freeze(manifest)
    with submission_lock(manifest.run_dir):
        work = remaining(manifest, force)
        if starting is not None:
            starting(work)
        return local.run_local(work, workers, force, progress, shard_clips)


def calibrate(record: ManifestRecord, calibrate_from: Path | None, workers: int, threads: int) -> Calibration:
    """The timings an estimate rests on: an earlier run directory's, or a probe on this sweep's own data
    (extracting with ``workers`` processes, training with ``threads``, as the tasks will)."""
    if calibrate_from is not None:
        return calibrate_from_run_dir(load(RunDir(calibrate_from)))
    from hpc_radr.birdnet.model_files import ModelFiles
    from hpc_radr.birdnet.probe import probe

    work = whole_sweep(record)
    clips = [clip.path for clip in sweep_clips(work.manifest, clip_keys(work.manifest))]
    sweep = work.manifest.sweep
    units = [(record.units[unit_name(c.dataset, c.extraction)], training_for(sweep, c), c)
             for c in unique_runs(record.configurations)]
    largest = max((sum(samples_per_epoch(len(unit.positives), len(unit.negatives), settings.val_split,
                                         c.upsampling_ratio)) for unit, settings, c in units), default=8)
    model = ModelFiles(Path(record.model.model), Path(record.model.labels))
    return probe(clips, model, sweep.training, largest, workers, threads)


def keep_estimate(manifest: Manifest, found: Estimate) -> None:
    """Keep what a submission was estimated to cost, for the report to set against what it cost."""
    write_json(manifest.run_dir.estimate, {"made_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                           **found.as_json()})


def whole_sweep(record: ManifestRecord) -> Work:
    """All of a sweep's work, as if nothing were done yet: what `plan --estimate` prices (nothing is read)."""
    manifest = Manifest(record, RunDir(Path("runs") / "estimate"))
    count = len(sweep_clips(manifest, clip_keys(manifest)))
    return Work(manifest, list(range(count)), count, [c.run_id for c in manifest.runs], [])


def _missing_per_range(work: Work, ranges: list[tuple[int, int]]) -> list[int]:
    missing = set(work.missing_clips)
    return [sum(1 for k in range(start, stop) if k in missing) for start, stop in ranges]


def local_capacity(work: Work, workers: int, shard_clips: int) -> Capacity:
    """How `submit --executor local` lays the work out: the extraction shards dealt to at most ``workers``
    jobs sharing the cores, then ``workers`` training processes sharing them, each taking the next run."""
    cores = runner.worker_cpus()
    _, ranges = shards(work.missing_clips, work.clip_count, shard_clips)
    count = max(1, min(workers, len(ranges)))
    per_range = _missing_per_range(work, ranges)
    tasks = [per_range[k::count] for k in range(count)] if ranges else []
    lanes = max(1, min(workers, len(work.pending_runs)))
    return Capacity("local", lanes, max(1, cores // lanes), 0, len(work.pending_runs), tasks, count,
                    max(1, cores // count))


def slurm_capacity(work: Work, plan: JobPlan, options: SlurmOptions) -> Capacity:
    """How a Slurm job plan lays the work out: its extraction tasks (one shard each) and training tasks."""
    embeds = [job for job in plan.jobs if job.kind is JobKind.embed]
    ranges = [clip_range(task) for job in embeds for task in job.tasks]
    throttle = min([job.throttle for job in embeds if job.throttle] or [max(1, len(ranges))])
    return Capacity("slurm", options.array_parallelism, options.train.cpus, options.train.gpus,
                    plan.runs_per_task, [[n] for n in _missing_per_range(work, ranges)], throttle,
                    options.embed.cpus)


def estimate_cost(work: Work, executor: str, workers: int, options: SlurmOptions,
                  calibrate_from: Path | None = None) -> Estimate:
    """What ``work`` will cost, laid out as `submit` would (Slurm: planned with Slurm's default limits,
    without asking a cluster), calibrated from an earlier run directory or by a probe."""
    manifest = work.manifest
    if executor == "local":
        capacity = local_capacity(work, workers, options.embed_shard_clips)
    else:
        plan = plan_jobs(manifest.sweep.name, work.missing_clips, work.clip_count, work.pending_runs, options,
                         slurm_site.DEFAULT_MAX_ARRAY_SIZE, samples=largest_unit(manifest))
        capacity = slurm_capacity(work, plan, options)
    calibration = calibrate(manifest.record, calibrate_from, capacity.embed_cpus, capacity.train_cpus)
    return estimate(manifest.record, manifest.sweep, calibration, capacity,
                    [manifest.run(run_id) for run_id in work.pending_runs])
