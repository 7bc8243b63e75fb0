"""Running a submission on this machine through submitit's LocalExecutor, with a cap on workers.

submitit's LocalExecutor starts every job at once, so ``workers`` jobs are started, each one process that
trains runs one after another (TensorFlow is imported once per worker): every worker takes the next run no
other worker has claimed yet, so they all end within about one run of each other. The clips the clip store
lacks are extracted first, their shards (as on Slurm) spread over at most ``workers`` jobs that share the cores.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import submitit

from hpc_radr import runner
from hpc_radr.clip_store import ClipStore
from hpc_radr.errors import HpcRadrError
from hpc_radr.job_plan import DEFAULT_SHARD_CLIPS, shards
from hpc_radr.results import has_result
from hpc_radr.submission import Work

Progress = Callable[[str, int, int], None]  # (phase, done, total)


class ExecutorError(HpcRadrError, RuntimeError):
    """A submission that could not run; the message says where to look."""


@dataclass
class LocalOutcome:
    trained: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # why workers stopped early (full disk, read-only folder)


def _wait(jobs: list, count_done: Callable[[], int], total: int, phase: str, progress: Progress | None) -> None:
    while not all(job.done() for job in jobs):
        if progress:
            progress(phase, count_done(), total)
        time.sleep(0.5)
    if progress:
        progress(phase, count_done(), total)


def run_local(work: Work, workers: int, force: bool = False, progress: Progress | None = None,
              shard_clips: int = DEFAULT_SHARD_CLIPS) -> LocalOutcome:
    """Extract the missing clips, then train the pending runs with at most ``workers`` processes; block until
    done."""
    started = time.perf_counter()
    run_dir = work.manifest.run_dir
    executor = submitit.LocalExecutor(folder=run_dir.submitit / "local")
    executor.update_parameters(timeout_min=7 * 24 * 60)
    outcome = LocalOutcome(skipped=list(work.done_runs))

    if work.missing_clips:
        _extract(work, workers, shard_clips, executor, progress)

    todo = list(work.pending_runs)
    if todo:
        workers = max(1, min(workers, len(todo)))
        threads = max(1, runner.worker_cpus() // workers)
        claims = run_dir.submitit / "claims" / f"{os.getpid()}-{time.time_ns()}"
        claims.mkdir(parents=True)
        jobs = [executor.submit(runner.train_runs, run_dir.path, todo, force, threads, claims=claims)
                for _ in range(workers)]

        since = time.time() - 1

        def finished() -> int:
            """Runs whose result or failure record was written by this submission."""
            paths = [p for run_id in todo for p in (run_dir.result(run_id), run_dir.failure(run_id))]
            return sum(1 for p in paths if p.exists() and p.stat().st_mtime >= since)

        _wait(jobs, finished, len(todo), "training", progress)
        shutil.rmtree(claims, ignore_errors=True)  # left in place if interrupted: workers may still be running
        for job in jobs:
            try:
                stopped = job.result().stopped  # a full disk or read-only folder; failed runs are counted below
            except submitit.core.utils.FailedJobError as err:  # the worker itself broke (not one of its runs)
                stopped = f"a worker failed: {(str(err).strip().splitlines() or [''])[-1]}; its log: {job.paths.stderr}"
            except submitit.core.utils.UncompletedJobError:
                # killed, or submitit could not write the worker's outcome (a full disk): its runs are counted below
                stopped = (f"a worker ended without reporting back (killed, or its folder could not be written); "
                           f"its log: {job.paths.stderr}")
            if stopped and stopped not in outcome.errors:
                outcome.errors.append(stopped)
    for run_id in todo:
        (outcome.trained if has_result(run_dir, run_id) else outcome.failed).append(run_id)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _extract(work: Work, workers: int, shard_clips: int, executor: submitit.LocalExecutor,
             progress: Progress | None) -> None:
    """The missing clips' shards, dealt round-robin to at most ``workers`` jobs that share this machine's cores."""
    run_dir = work.manifest.run_dir
    _, ranges = shards(work.missing_clips, work.clip_count, shard_clips)
    count = max(1, min(workers, len(ranges)))
    cpus = max(1, runner.worker_cpus() // count)
    store = ClipStore(run_dir)
    before, total = len(store.index()), len(work.missing_clips)
    jobs = [executor.submit(runner.embed, run_dir.path, ranges[k::count], cpus) for k in range(count)]
    _wait(jobs, lambda: min(total, len(store.index()) - before), total, "embeddings", progress)
    for job in jobs:
        try:
            job.result()
        except submitit.core.utils.UncompletedJobError as err:  # failed, or ended without leaving its result
            raise ExecutorError(f"embedding extraction failed; nothing was trained. Log: {job.paths.stderr}\n"
                                f"{str(err).strip().splitlines()[-1]}") from None
