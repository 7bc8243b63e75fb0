"""The task runner: what every executor runs on a worker, in-process (submitit) or via `hpc-radr run-task`.

Two kinds of task: ``embed`` extracts ranges of the sweep's clips into the clip store; ``train_runs`` trains some
runs, one after another in this process (TensorFlow is imported once per process, results are identical to one
process per run because every run clears Keras' session and reseeds); a unit's arrays are assembled from the
store by the first task that needs them. A run whose valid result exists is skipped
unless forced. A failing run leaves a failure record and does not stop the others. A full disk or read-only
folder is the exception: it stops the task at once, since every later run would fail the same way.
``train_runs`` returns what happened (``TaskReport``, with the reason it stopped); ``train`` raises when a run
failed (``TaskFailed``, ``StorageFailed``), which is what schedulers need to mark the task failed.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import resource
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import submitit

from hpc_radr import clip_store, embedding_cache
from hpc_radr.datasets import content_fingerprint
from hpc_radr.errors import HpcRadrError
from hpc_radr.manifest import Manifest, load
from hpc_radr.results import has_result, write_failure, write_result
from hpc_radr.run_dir import RunDir, RunDirError
from hpc_radr.storage import FULL, describe, storage_error
from hpc_radr.sweep import training_for

SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_PARTITION",
                   "SLURM_JOB_NODELIST", "SLURM_RESTART_COUNT")


class TaskFailed(HpcRadrError, RuntimeError):
    """Some runs of a task failed; their failure records hold the details."""


class StorageFailed(TaskFailed):
    """A run's files could not be written (disk or quota full, read-only or forbidden folder).

    The task stops at the first such fault instead of training its other runs: they would train for minutes
    each and then fail to write in the same place, holding the allocation for nothing. Runs not tried have no
    result and no failure record, so `status` lists them as missing and `resubmit` runs them again."""


@dataclass
class TaskReport:
    """What one task did, returned to the executor."""

    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the task stopped before its other runs (a full disk, a read-only folder)


def worker_cpus() -> int:
    """CPUs this process may use: Slurm's allocation or the affinity mask."""
    for variable in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return len(os.sched_getaffinity(0))


def ensure_embeddings(manifest: Manifest, name: str, workers: int | None = None) -> embedding_cache.Embeddings:
    """Load the unit's cache, assembling it from the clip store first if missing (and extracting the clips the
    store lacks, which a planned sweep's extraction tasks leave none of); the data must still match the manifest."""
    run_dir = manifest.run_dir
    spec = manifest.units[name]
    path = run_dir.cache_file(spec.key)
    with embedding_cache.exclusive(path):
        if path.exists():
            return embedding_cache.load(path, spec.key)
        try:
            fingerprint = clip_store.unit_of(manifest, name).fingerprint
        except FileNotFoundError as err:
            raise embedding_cache.CacheError(f"{err.filename}: data file gone since submit") from None
        if fingerprint != spec.data_fingerprint:
            raise embedding_cache.CacheError(
                f"the data of '{name}' changed since submit (files added, removed or rewritten); "
                "submit again into a new run directory to use the new data")
        store, keys = clip_store.ClipStore(run_dir), clip_store.clip_keys(manifest)
        rows = clip_store.unit_rows(manifest, name, keys)
        wanted, stored = {key for key, _ in rows}, store.index()
        _extract(manifest, [c for c in clip_store.sweep_clips(manifest, keys) if c.key in wanted
                            and c.key not in stored], workers)
        started = time.perf_counter()
        embeddings = store.assemble(rows, [manifest.sweep.data.positive_class])
        embedding_cache.save(path, embeddings, spec.key)
        embedding_cache.write_stats(path, {
            "unit": name, "files": len(rows), "clips": len(wanted), "rows": int(len(embeddings.x)),
            "assemble_s": time.perf_counter() - started, "host": socket.gethostname(),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds")})
        return embeddings


def _extract(manifest: Manifest, clips: list[clip_store.Clip], workers: int | None) -> None:
    """Extract ``clips`` into the clip store as one shard, once each file is seen to hold the bytes it held at
    submit; records the shard's cost (wall, CPU of this process and its pool, CPU per clip in the workers)."""
    if not clips:
        return
    for clip in clips:
        try:
            found = content_fingerprint(clip.path)
        except FileNotFoundError:
            raise embedding_cache.CacheError(f"{clip.path}: data file gone since submit") from None
        if found != clip.content:
            raise embedding_cache.CacheError(
                f"{clip.path}: the data changed since submit (the file was rewritten); submit again into a new "
                "run directory to use the new data")
    from hpc_radr.birdnet.embeddings import extract_clips, warm_statistics
    from hpc_radr.birdnet.runtime import import_birdnet

    workers = workers or worker_cpus()
    started = time.perf_counter()
    import_birdnet()  # TensorFlow's import, timed apart from extraction
    import_s = time.perf_counter() - started
    groups: dict[tuple, list[clip_store.Clip]] = {}
    for clip in clips:  # one shard per extraction setting (a sweep with crop_mode or overlap axes has several)
        groups.setdefault(clip.extraction, []).append(clip)
    for extraction, group in groups.items():
        settings = dict(extraction)
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        found_rows = extract_clips([c.path for c in group], manifest.model, settings["crop_mode"],
                                   settings["overlap"], workers)
        extract_s, extract_cpu_s = time.perf_counter() - started, _cpu_seconds() - cpu_started
        clip_store.ClipStore(manifest.run_dir).add(
            [c.key for c in group], [r.x for r in found_rows], [r.cpu_s for r in found_rows],
            {"workers": workers, "import_s": import_s, "extract_s": extract_s, "extract_cpu_s": extract_cpu_s,
             **warm_statistics(found_rows),
             "extraction": settings, "host": socket.gethostname(), "pid": os.getpid(),
             "finished_at": datetime.now(UTC).isoformat(timespec="seconds")})
        import_s = 0.0  # paid once, by the first shard


def _cpu_seconds() -> float:
    """CPU time of this process and of its ended children (the extraction pool), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def embed(run_dir: Path, ranges: list[tuple[int, int]] | None = None, workers: int | None = None) -> dict:
    """What an extraction task runs: extract the clips at ``ranges`` (start, stop) of the sweep's clip list
    (``clip_store.sweep_clips``; default: all of it) that the store lacks, one store shard per range, so that a
    task stopped half-way keeps the ranges it finished. Says how many clips the ranges hold and how many were
    extracted."""
    manifest = load(RunDir(Path(run_dir)))
    clips = clip_store.sweep_clips(manifest, clip_store.clip_keys(manifest))
    for start, _ in ranges or []:
        if not 0 <= start < len(clips):
            raise RunDirError(f"--first-clip {start}: the sweep has clips 0-{len(clips) - 1}")
    store, wanted, extracted = clip_store.ClipStore(manifest.run_dir), 0, 0
    for start, stop in ranges or [(0, len(clips))]:
        stored = store.index()
        todo = [clip for clip in clips[start:stop] if clip.key not in stored]
        _extract(manifest, todo, workers)
        wanted, extracted = wanted + len(clips[start:stop]), extracted + len(todo)
    return {"clips": wanted, "extracted": extracted}


def _environment() -> dict:
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "pid": os.getpid(),
        "slurm": {k: os.environ[k] for k in SLURM_VARIABLES if k in os.environ},
    }


@dataclass(frozen=True)
class _Session:
    """What every run of one training process shares: imported once, recorded in every result."""

    import_s: float
    versions: dict[str, str]


def _start_training(manifest: Manifest, threads: int | None) -> _Session:
    """Import TensorFlow and BirdNET, set their threads and model paths, and exempt the objects they create
    from garbage collection: Keras' clear_session() at the start of every run would otherwise collect over
    TensorFlow's ~400,000 objects, 0.25 s per run, and they live as long as the process."""
    started = time.perf_counter()
    from hpc_radr.birdnet import runtime

    runtime.limit_threads(threads)
    runtime.import_birdnet()  # before TensorFlow initialises its devices: they must include Slurm's GPUs
    import_s = time.perf_counter() - started
    settings = manifest.sweep.training
    runtime.configure(manifest.model, settings.crop_mode, settings.overlap, threads or worker_cpus())
    gc.collect()
    gc.freeze()
    return _Session(import_s, runtime.versions())


def _train_one(manifest: Manifest, session: _Session, run_id: str) -> None:
    """One run: its embeddings, BirdNET's training and evaluation, its model and its whole result file."""
    from hpc_radr.birdnet import runtime, training

    run_dir, config = manifest.run_dir, manifest.run(run_id)
    settings, (train_unit, test_unit) = training_for(manifest.sweep, config), manifest.units_of(config)
    log = run_dir.log(run_id)
    begun = datetime.now(UTC).isoformat(timespec="seconds")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        load_started, cpu_started = time.perf_counter(), time.process_time()
        train_set = ensure_embeddings(manifest, train_unit)
        test_set = ensure_embeddings(manifest, test_unit)
        load_s = time.perf_counter() - load_started
        load_cpu_s = time.process_time() - cpu_started
        outcome = training.train_and_evaluate(config, settings, train_set, test_set, run_dir.model(run_id))
    outcome["timings"].update(cache_load_s=load_s, cache_load_cpu_s=load_cpu_s, process_import_s=session.import_s,
                              run_cpu_s=time.process_time() - cpu_started)
    write_result(run_dir, run_id, {
        "configuration": config.as_dict(),
        "shared_by": [c.index for c in manifest.configurations if c.run_id == run_id],
        "training": settings.model_dump(),
        "evaluation_protocol": settings.evaluation,
        **outcome,
        "model_file": str(run_dir.model(run_id)),
        "versions": session.versions,
        "environment": _environment(),
        "gpus": runtime.gpus_seen(),
        "started_at": begun,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    })


def train_runs(run_dir: Path, run_ids: list[str], force: bool = False, threads: int | None = None, *,
               on_trained: Callable[[str], None] | None = None, claims: Path | None = None) -> TaskReport:
    """Train ``run_ids`` one after another in this process and say what happened; ``on_trained(run_id)`` is
    told of each run as its result is written.

    ``claims``: a folder shared by the workers of one local submission, which all get the same runs; each run
    is trained by the worker that claims it first, so a worker that is ahead takes the next run (no worker
    idles at the end while another still has a queue). Runs claimed by another worker are passed over."""
    run_dir = RunDir(Path(run_dir))
    manifest = load(run_dir)
    report = TaskReport()
    todo = []
    for run_id in run_ids:
        manifest.run(run_id)  # unknown ids fail before any work
        (report.skipped if has_result(run_dir, run_id) and not force else todo).append(run_id)
    if not todo:
        return report
    session = _start_training(manifest, threads)
    try:
        for position, run_id in enumerate(todo):
            if claims is not None and not _claim(claims, run_id):
                continue
            try:
                _train_one(manifest, session, run_id)
            except Exception as err:
                report.failed.append(run_id)
                unrecorded = _record_failure(run_dir, run_id, err, run_dir.log(run_id))
                fault = storage_error(err) or unrecorded  # any fault of the failure record: storage is broken
                if fault is not None:
                    report.stopped = _storage_message(run_dir, run_id, err, fault, unrecorded, todo[position + 1:])
                    return report
                continue
            report.trained.append(run_id)
            if on_trained is not None:
                on_trained(run_id)
    finally:
        gc.unfreeze()
    return report


def train(run_dir: Path, run_ids: list[str], force: bool = False, threads: int | None = None,
          on_trained: Callable[[str], None] | None = None) -> TaskReport:
    """``train_runs``, raising when a run failed so that the scheduler marks the task failed."""
    report = train_runs(run_dir, run_ids, force, threads, on_trained=on_trained)
    if report.stopped:
        raise StorageFailed(report.stopped)
    if report.failed:
        raise TaskFailed(f"{len(report.failed)} of {len(run_ids)} runs failed: {', '.join(report.failed)}; "
                         f"see {Path(run_dir) / 'failures'}")
    return report


def _record_failure(run_dir: RunDir, run_id: str, err: Exception, log: Path) -> OSError | None:
    """Write the run's failure record; the OSError that prevented it, if one did (else None).

    On a full disk the record usually cannot be written either: that must not replace the run's own error."""
    try:
        write_failure(run_dir, run_id, {
            "error": f"{type(err).__name__}: {err}".strip(),
            "traceback": traceback.format_exc(),
            "log": str(log),
            "environment": _environment(),
            "failed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        })
    except OSError as failed:
        return failed
    return None


def _storage_message(run_dir: RunDir, run_id: str, err: Exception, fault: OSError, unrecorded: OSError | None,
                     untried: list[str]) -> str:
    """One line: which path could not be written and why, what that means for the runs, what to do."""
    text = ""
    if storage_error(err) is None:  # the run failed for its own reason; only its failure record met the fault
        first = (str(err).strip().splitlines() or [""])[0]
        text = f"run {run_id} failed ({type(err).__name__}: {first}) and its failure record could not be written: "
    text += describe(fault, f"the log, model or embedding cache of run {run_id} in {run_dir.path}")
    text += f"; run {run_id} has no result" + (" and no failure record" if unrecorded else "")
    if untried:
        text += f"; the task stopped before its {len(untried)} other run{'s' * (len(untried) > 1)} " \
                f"({', '.join(untried)}), which would fail the same way"
    return text + f"; rerun with `hpc-radr resubmit {run_dir.path}` once {_remedy(fault)}"


def _remedy(fault: OSError) -> str:
    return "there is space" if fault.errno in FULL else "the folder is writable"


def _claim(claims: Path, run_id: str) -> bool:
    """Atomically take ``run_id`` for this worker; False if another worker took it."""
    try:
        os.close(os.open(claims / run_id, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class TrainTask(submitit.helpers.Checkpointable):
    """``train`` as a callable submitit can requeue: on a time limit or preemption it resubmits itself
    with the runs this attempt has not finished (finished ones are never trained twice)."""

    def __init__(self) -> None:
        self.finished: list[str] = []

    def __call__(self, run_dir: Path, run_ids: list[str], force: bool = False, threads: int | None = None):
        return train(run_dir, [r for r in run_ids if r not in self.finished], force, threads, self.finished.append)

    def checkpoint(self, run_dir: Path, run_ids: list[str], force: bool = False, threads: int | None = None):
        return submitit.helpers.DelayedSubmission(self, run_dir, run_ids, force, threads)


def collect_task(run_dir: Path) -> list[str]:
    """The collect job at the end of a Slurm submission: the merged tables and the report."""
    from hpc_radr.collect import collect
    from hpc_radr.report import build_report

    found = collect(run_dir)
    return [*found.files, str(build_report(run_dir, (found.table, found.problems)).html)]
