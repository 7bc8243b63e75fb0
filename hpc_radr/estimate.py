"""What a sweep will cost before it is submitted: CPU-, core- and GPU-hours per job kind, and the wall time at the
chosen throttle, from a calibration measured on this data or taken from an earlier run directory.

The cost model has one term per thing that costs, each linear in what it grows with:

- extraction: per extraction call (one shard of the clip store) each worker's start-up (BirdNET's model, the
  audio libraries and librosa's compiled functions loaded, about 30 clips' worth) plus (clips) x (CPU-seconds
  per clip, as the workers measure it past their first clip); a call's wall time is one start-up (the workers
  start at once) plus its clips' CPU-seconds spread over the task's CPUs at the parallel efficiency measured;
  per task, one TensorFlow import more;
- training, per run: ``a + e x (b + c x s)`` seconds, wall and CPU alike, where ``e`` is the epochs run and
  ``s`` the samples one epoch sees (the fit split after upsampling plus the validation split, both known from
  the dataset's size, the split and the ratio before anything is trained); ``a`` holds loading the embeddings,
  evaluation and export; per task, one TensorFlow import more;
- the sweep's wall time: extraction tasks, then training tasks, each laid greedily, in index order, on as many
  lanes as the throttle (or the local workers) allows; queue waits are not included.

Epochs run are the planned epochs times the fraction the calibration's runs went before early stopping (1.0 for a
probe, which has no such history: its estimate of training is then an upper bound). The uncertainty, said next
to every figure, is the relative spread of the calibration's own runs around the model, 5% for the machine's
load, and, for runs beyond the sizes the calibration ran, the standard error its coefficients give there
(an earlier sweep of 300 samples per epoch cannot pin the cost per sample that dominates at 3,000).
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from hpc_radr.errors import HpcRadrError
from hpc_radr.manifest import Manifest, ManifestRecord, unit_name
from hpc_radr.results import read_result
from hpc_radr.sweep import Configuration, Sweep, training_for, unique_runs

# Extraction statistics are JSON files beside what they describe; these keys are in every one of them.
EXTRACTION_KEYS = ("clips", "workers", "extract_s", "extract_cpu_s")
COLLECT_S = 20.0  # a collect job: Python start, merge, report; small beside everything else (not calibrated)


class EstimateError(HpcRadrError, ValueError):
    """No calibration can be made from what was given."""


@dataclass(frozen=True)
class RunCost:
    """Seconds of one training run as ``a + e x (b + c x s)`` (epochs ``e``, samples per epoch ``s``)."""

    a: float
    b: float
    c: float
    # The covariance of (a, b, c) from the calibration runs' residuals; None when they cannot show it (no more
    # runs than terms, or runs that do not vary in epochs and size).
    covariance: tuple[tuple[float, ...], ...] | None = None

    def seconds(self, epochs: float, samples: float) -> float:
        return self.a + epochs * (self.b + self.c * samples)

    def total_error(self, runs: list[tuple[float, float]]) -> float:
        """The standard error of the summed seconds of ``runs`` (epochs, samples per epoch) that the coefficients'
        own uncertainty gives: small among the sizes the calibration ran, large far beyond them (runs of 300
        samples say little about the cost per sample at 3,000). 0 without a covariance."""
        if self.covariance is None or not runs:
            return 0.0
        x = np.array([[1.0, e, e * s] for e, s in runs]).sum(axis=0)
        return float(np.sqrt(max(0.0, x @ np.asarray(self.covariance) @ x)))


@dataclass(frozen=True)
class Calibration:
    """The measured costs an estimate rests on, and where they come from."""

    source: str  # "probe" or "run_dir"
    described: str  # in words: what was measured, on what
    clip_cpu_s: float  # CPU-seconds per clip extracted, in a worker past its first clip
    worker_start_cpu_s: float  # CPU-seconds of each extraction worker's start-up, per call (about as much wall)
    extraction_efficiency: float  # CPU-seconds per wall-second per extraction worker after start-up (<= 1)
    clip_rate_measured: bool  # False: an average with start-up in it (statistics of an older version)
    import_s: float  # one TensorFlow + BirdNET import (wall; about as many CPU-seconds)
    run_wall: RunCost
    run_cpu: RunCost
    epoch_fraction: float  # epochs run / epochs planned (early stopping); 1.0 when unknown
    spread: float  # relative spread of the calibration's runs around the model (one standard deviation)
    runs: int  # training runs the calibration measured
    samples_range: tuple[float, float]  # the fewest and the most samples per epoch among them

    def as_json(self) -> dict:
        return asdict(self)


def fit_run_cost(epochs: list[float], samples: list[float], seconds: list[float]) -> tuple[RunCost, float]:
    """The non-negative ``a, b, c`` nearest to the measured runs, and their relative spread around it."""
    from scipy.optimize import nnls

    e, s, y = (np.asarray(v, dtype=float) for v in (epochs, samples, seconds))
    design = np.column_stack([np.ones_like(e), e, e * s])
    coefficients, _ = nnls(design, y)
    predicted = design @ coefficients
    relative = (y - predicted) / np.maximum(predicted, 1e-9)
    spread = float(np.sqrt(np.mean(relative ** 2))) if len(y) > 3 else 0.0
    covariance = None
    if len(y) > 3 and np.linalg.matrix_rank(design) == 3:  # least squares' own: residual variance x (X'X)^-1
        residual = y - predicted
        variance = float(residual @ residual) / (len(y) - 3)
        covariance = tuple(map(tuple, (variance * np.linalg.inv(design.T @ design)).tolist()))
    return RunCost(*map(float, coefficients), covariance=covariance), spread


def fit_extraction(calls: list[dict]) -> dict:
    """The extraction terms of a Calibration from measured calls (extraction statistics: ``clips``,
    ``workers``, ``extract_s``, ``extract_cpu_s`` and what the workers measured, ``warm_clips`` and
    ``warm_clip_cpu_s``). The per-clip rate is the workers' own over the clips that were not a worker's first;
    a worker's start-up is what the call cost beyond its clips at that rate (the median over calls, so that a
    machine's first extraction, which compiles librosa's functions, does not price every later one); the
    efficiency is the clips' CPU-seconds over what the workers held after their start-up.

    Statistics from before the workers told their first clip apart give only the average over all clips,
    start-up included: an upper bound, said in the calibration's description."""
    clips = np.asarray([c["clips"] for c in calls], dtype=float)
    cpu = np.asarray([c["extract_cpu_s"] for c in calls], dtype=float)
    wall = np.asarray([c["extract_s"] for c in calls], dtype=float)
    workers = np.asarray([max(1, c["workers"]) for c in calls], dtype=float)
    warm = sum(c.get("warm_clips", 0) for c in calls)
    if warm:
        per_clip = sum(c["warm_clip_cpu_s"] for c in calls if "warm_clips" in c) / warm
        start = float(max(0.0, np.median((cpu - clips * per_clip) / workers)))
    else:
        per_clip, start = float(cpu.sum() / clips.sum()), 0.0
    held = float(np.sum(workers * np.maximum(wall - start, 1e-3)))
    efficiency = float(min(1.0, clips.sum() * per_clip / held)) if per_clip > 0 else 1.0
    return {"clip_cpu_s": float(per_clip), "worker_start_cpu_s": start, "extraction_efficiency": efficiency,
            "clip_rate_measured": bool(warm)}


def samples_per_epoch(positives: int, negatives: int, val_split: float, ratio: float) -> tuple[int, int]:
    """(samples one epoch fits on, validation samples) of a run, as BirdNET 2.4 makes them: each class split
    into ``int(n x (1 - val_split))`` to fit and the rest to validate; the fit positives raised to
    ``int(max(fit positives, fit negatives) x ratio)`` when fewer."""
    fit_pos, fit_neg = int(positives * (1 - val_split)), int(negatives * (1 - val_split))
    if ratio > 0:
        fit_pos = max(fit_pos, int(max(fit_pos, fit_neg) * ratio))
    return fit_pos + fit_neg, (positives - int(positives * (1 - val_split))) + (
        negatives - int(negatives * (1 - val_split)))


# -------------------------------------------------------------------------------------------- calibration --

def _extraction_stats(run_dir: Path) -> list[dict]:
    """Every extraction statistics file of a run directory (unit caches, or clip store shards)."""
    found = []
    for folder in (run_dir / "cache", run_dir / "clips"):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                stats = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(stats, dict) and all(isinstance(stats.get(k), (int, float)) for k in EXTRACTION_KEYS):
                found.append(stats)
    return found


def calibrate_from_run_dir(manifest: Manifest) -> Calibration:
    """A calibration from the timings an earlier sweep recorded (its extraction statistics and its results)."""
    stats = [s for s in _extraction_stats(manifest.run_dir.path) if s["clips"] > 0 and s["extract_s"] > 0]
    if not stats:
        raise EstimateError(f"{manifest.run_dir.path}: no extraction statistics to calibrate from "
                            "(a run directory whose embeddings were extracted by hpc-radr)")
    clips = sum(s["clips"] for s in stats)
    extraction = fit_extraction(stats)
    imports = [s["import_s"] for s in stats if s.get("import_s", 0) > 1.0]  # the first unit of a task imports
    epochs, samples, walls, cpus, fractions, process_imports = [], [], [], [], [], []
    for config in manifest.runs:
        record = read_result(manifest.run_dir, config.run_id).record
        if record is None or "timings" not in record:
            continue
        timings, counts = record["timings"], record.get("sample_counts") or {}
        if "run_cpu_s" not in timings or "fit_after_upsampling" not in counts:
            continue
        fit, val = counts["fit_after_upsampling"], counts.get("validation", {"positive": 0, "negative": 0})
        epochs.append(float(record["epochs_run"]))
        samples.append(float(fit["positive"] + fit["negative"] + val["positive"] + val["negative"]))
        walls.append(sum(timings.get(k, 0.0) for k in ("cache_load_s", "fit_s", "evaluate_s", "export_s")))
        cpus.append(float(timings["run_cpu_s"]))
        fractions.append(record["epochs_run"] / record["training"]["epochs"])
        process_imports.append(float(timings.get("process_import_s", 0.0)))
    if len(epochs) < 3:
        raise EstimateError(f"{manifest.run_dir.path}: {len(epochs)} results with timings; a calibration needs "
                            "at least 3 (collect an earlier sweep first, or use the probe: --estimate alone)")
    run_wall, wall_spread = fit_run_cost(epochs, samples, walls)
    run_cpu, cpu_spread = fit_run_cost(epochs, samples, cpus)
    import_s = float(np.median(process_imports + imports)) if process_imports or imports else 8.0
    return Calibration(
        source="run_dir",
        described=f"the timings of {manifest.run_dir.path}: {len(epochs)} runs and {clips} extracted clips"
        + ("" if extraction["clip_rate_measured"] else
           " (recorded before the workers timed their first clip apart: extraction is an upper bound)"),
        **extraction, import_s=import_s,
        run_wall=run_wall, run_cpu=run_cpu, epoch_fraction=float(np.mean(fractions)),
        spread=max(wall_spread, cpu_spread), runs=len(epochs), samples_range=(min(samples), max(samples)))


# ------------------------------------------------------------------------------------------------ estimate --

@dataclass(frozen=True)
class Capacity:
    """How the work is laid out: the throttle (Slurm) or the worker count (local), and each task's CPUs/GPUs."""

    executor: str  # "slurm" or "local"
    train_lanes: int  # training tasks at once
    train_cpus: int
    train_gpus: int
    runs_per_task: int  # local: every run of the sweep goes through each worker's one process
    embed_tasks: list[list[int]]  # per extraction task, the clips of each of its calls (shards)
    embed_lanes: int
    embed_cpus: int


@dataclass(frozen=True)
class KindCost:
    """One kind of job: how many tasks, what they consume, what they hold, how long the phase takes."""

    kind: str
    tasks: int
    cpu_hours: float  # CPU time consumed
    core_hours: float  # CPUs held x wall time: what a cluster's accounting charges
    gpu_hours: float  # GPUs held x wall time
    task_hours_max: float  # the longest task (for --time-min)
    wall_hours: float  # this phase, start to end, at the throttle


@dataclass(frozen=True)
class Estimate:
    calibration: Calibration
    capacity: Capacity
    kinds: list[KindCost]
    wall_hours: float
    uncertainty: float  # relative, one standard deviation
    runs: int
    clips: int
    notes: list[str] = field(default_factory=list)

    @property
    def cpu_hours(self) -> float:
        return sum(k.cpu_hours for k in self.kinds)

    @property
    def gpu_hours(self) -> float:
        return sum(k.gpu_hours for k in self.kinds)

    def as_json(self) -> dict:
        return {"calibration": self.calibration.as_json(), "capacity": asdict(self.capacity),
                "kinds": [asdict(k) for k in self.kinds], "cpu_hours": self.cpu_hours,
                "gpu_hours": self.gpu_hours, "wall_hours": self.wall_hours, "uncertainty": self.uncertainty,
                "runs": self.runs, "clips": self.clips, "notes": self.notes}


def _makespan(durations: list[float], lanes: int) -> float:
    """Wall time of tasks started in order, each on the first lane free."""
    free = [0.0] * max(1, min(lanes, len(durations)))
    for duration in durations:
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free) if durations else 0.0


def run_sizes(record: ManifestRecord, sweep: Sweep, calibration: Calibration,
              runs: list[Configuration]) -> list[tuple[float, float]]:
    """(epochs, samples per epoch) each run is expected to train, in order."""
    found = []
    for config in runs:
        settings = training_for(sweep, config)
        unit = record.units[unit_name(config.dataset, config.extraction)]
        fit, val = samples_per_epoch(len(unit.positives), len(unit.negatives), settings.val_split,
                                     config.upsampling_ratio)
        found.append((settings.epochs * calibration.epoch_fraction, float(fit + val)))
    return found


def run_seconds(calibration: Calibration, sizes: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each run of ``sizes``, in order."""
    return [(calibration.run_wall.seconds(e, s), calibration.run_cpu.seconds(e, s)) for e, s in sizes]


def estimate(record: ManifestRecord, sweep: Sweep, calibration: Calibration, capacity: Capacity,
             runs: list[Configuration] | None = None) -> Estimate:
    """The cost of training ``runs`` (default: every run of the sweep) and extracting the clips of
    ``capacity.embed_tasks``, at ``capacity``."""
    runs = unique_runs(record.configurations) if runs is None else runs
    hour, kinds, notes = 3600.0, [], []
    def call_wall(clips: int) -> float:  # the workers start at once, then share the clips
        return calibration.worker_start_cpu_s + clips * calibration.clip_cpu_s / (
            calibration.extraction_efficiency * capacity.embed_cpus)

    embed_walls = [calibration.import_s + sum(map(call_wall, task)) for task in capacity.embed_tasks]
    calls = sum(len(task) for task in capacity.embed_tasks)
    clips = sum(map(sum, capacity.embed_tasks))
    embed_wall = _makespan(embed_walls, capacity.embed_lanes)
    if capacity.embed_tasks:
        cpu = (clips * calibration.clip_cpu_s + calls * capacity.embed_cpus * calibration.worker_start_cpu_s
               + len(embed_walls) * calibration.import_s)
        kinds.append(KindCost("embed", len(embed_walls), cpu / hour, sum(embed_walls) * capacity.embed_cpus / hour,
                              0.0, max(embed_walls) / hour, embed_wall / hour))
    sizes = run_sizes(record, sweep, calibration, runs)
    per_run = run_seconds(calibration, sizes)
    size = max(1, capacity.runs_per_task)
    tasks = [per_run[k:k + size] for k in range(0, len(per_run), size)]
    if capacity.executor == "local":  # each worker imports once and takes the next run: lanes of runs
        walls = [w for w, _ in per_run]
        train_wall = calibration.import_s + _makespan(walls, capacity.train_lanes)
        held = sum(walls) + calibration.import_s * min(capacity.train_lanes, len(walls))
        imports = min(capacity.train_lanes, len(walls))
        longest = train_wall
    else:
        task_walls = [calibration.import_s + sum(w for w, _ in task) for task in tasks]
        train_wall = _makespan(task_walls, capacity.train_lanes)
        held = sum(task_walls)
        imports = len(task_walls)
        longest = max(task_walls, default=0.0)
    if per_run:
        cpu = sum(c for _, c in per_run) + imports * calibration.import_s
        kinds.append(KindCost("train", imports if capacity.executor == "local" else len(tasks), cpu / hour,
                              held * capacity.train_cpus / hour, held * capacity.train_gpus / hour,
                              longest / hour, train_wall / hour))
    if capacity.executor == "slurm" and per_run:
        kinds.append(KindCost("collect", 1, COLLECT_S / hour, COLLECT_S / hour, 0.0, COLLECT_S / hour,
                              COLLECT_S / hour))
    if calibration.source == "probe":
        notes.append("the probe cannot know how early BirdNET's early stopping ends runs: training assumes every "
                     "run goes all its epochs (an upper bound)")
    if calibration.source == "probe" and capacity.executor == "local" and capacity.train_lanes > 1:
        notes.append(f"the probe's fits ran one at a time; {capacity.train_lanes} workers sharing this machine's "
                     "CPUs wait for each other, and the wall time comes out low (by 14-24% measured on 2 cores "
                     "with 2 workers); CPU-hours are not affected")
    if capacity.train_gpus:
        notes.append("GPU-hours are the GPUs held for the training tasks' wall time; the wall time is that of the "
                     "calibration's hardware (BirdNET's small head trains about as fast on CPU)")
    wall = embed_wall + train_wall + (COLLECT_S if capacity.executor == "slurm" and per_run else 0.0)
    extrapolated = _extrapolation(calibration, sizes, per_run)
    share = sum(c for _, c in per_run) / max(1e-9, sum(k.cpu_hours for k in kinds) * hour)
    (low, high), priced = calibration.samples_range, [s for _, s in sizes]
    if priced and (min(priced) < low or max(priced) > high) and extrapolated > calibration.spread:
        notes.append(f"training is priced outside the sizes the calibration ran ({low:,.0f}-{high:,.0f} samples per "
                     f"epoch; this sweep {min(priced):,.0f}-{max(priced):,.0f}): uncertain by +-{extrapolated:.0%} "
                     "there; the probe (--estimate without --calibrate-from) measures at this sweep's sizes")
    # 5 %: what a machine's load alone moves; the extrapolation weighs as much as training's share of the CPU
    uncertainty = math.sqrt(calibration.spread ** 2 + 0.05 ** 2 + (extrapolated * share) ** 2)
    return Estimate(calibration, capacity, kinds, wall / hour, uncertainty, len(runs), clips, notes)


def _extrapolation(calibration: Calibration, sizes: list[tuple[float, float]],
                   per_run: list[tuple[float, float]]) -> float:
    """The relative standard error of the training total from the coefficients alone (wall or CPU, the larger)."""
    if not per_run:
        return 0.0
    walls, cpus = sum(w for w, _ in per_run), sum(c for _, c in per_run)
    return max(calibration.run_wall.total_error(sizes) / max(walls, 1e-9),
               calibration.run_cpu.total_error(sizes) / max(cpus, 1e-9))


# ------------------------------------------------------------------------------------------ actual cost --

def _time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def actual_cost(manifest: Manifest) -> dict | None:
    """What the sweep cost, from the timings it recorded: CPU-hours per job kind (extraction, training runs
    and each training process' import) and the wall time from the first extraction to the last result,
    queue waits included. None when nothing was recorded yet."""
    kinds = {"embed": 0.0, "train": 0.0}
    starts, ends = [], []
    clips = 0
    for stats in _extraction_stats(manifest.run_dir.path):
        kinds["embed"] += stats["extract_cpu_s"] + stats.get("import_s", 0.0)
        clips += int(stats["clips"])
        end = _time(stats.get("finished_at"))
        if end is not None:
            ends.append(end)
            starts.append(end - timedelta(seconds=stats["extract_s"] + stats.get("import_s", 0.0)))
    processes: dict[tuple, float] = {}
    runs = 0
    for config in manifest.runs:
        record = read_result(manifest.run_dir, config.run_id).record
        if record is None or "run_cpu_s" not in record.get("timings", {}):
            continue
        runs += 1
        kinds["train"] += record["timings"]["run_cpu_s"]
        environment = record.get("environment", {})
        processes[(environment.get("host"), environment.get("pid"))] = record["timings"].get("process_import_s", 0.0)
        for stamp, found in (("started_at", starts), ("finished_at", ends)):
            moment = _time(record.get(stamp))
            if moment is not None:
                found.append(moment)
    if not runs and not clips:
        return None
    kinds["train"] += sum(processes.values())
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else math.nan
    return {"cpu_hours": {k: v / 3600 for k, v in kinds.items()}, "total_cpu_hours": sum(kinds.values()) / 3600,
            "wall_hours": wall / 3600, "runs": runs, "clips": clips, "processes": len(processes)}


def estimate_against_actual(manifest: Manifest) -> dict | None:
    """The kept estimate (``submit --estimate``) beside the actual cost; None when neither exists."""
    actual = actual_cost(manifest)
    try:
        estimated = json.loads(manifest.run_dir.estimate.read_text())
    except (OSError, ValueError):
        estimated = None
    if actual is None and estimated is None:
        return None
    return {"estimated": estimated, "actual": actual}


def readable_hours(value: float | None) -> str:
    """Hours readable at every size: seconds below a minute, minutes below an hour; "-" when unknown."""
    if value is None or math.isnan(value):
        return "-"
    if value < 1 / 60:
        return f"{value * 3600:.0f} s"
    return f"{value * 60:.1f} min" if value < 1 else f"{value:.2f} h"
