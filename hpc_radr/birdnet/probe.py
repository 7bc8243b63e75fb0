"""The probe behind `plan --estimate`: a short measurement on the user's own clips and at the sweep's own sizes.

It extracts a sample of the sweep's clips with BirdNET's loader (its workers time every clip, so that their
start-up and the cost per clip come apart), then times three fits of BirdNET's own training on
embeddings drawn so that the classes overlap, which fix the three terms of ``estimate.RunCost``: 2 epochs at a
quarter of and at the largest number of samples an epoch of the sweep sees, then as many epochs at the largest as
fit in about ``LONG_FIT_S`` (at most the sweep's). The long fit is what makes the per-epoch term trustworthy: from
2 and 4 epochs alone a run's start-up noise (a tenth of a second) read as a per-epoch difference and, extrapolated
to the sweep's epochs, priced the demo's runs a third too low. About half a minute at the demo's size, most of it
TensorFlow's import; nothing is written outside a temporary folder.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from hpc_radr.birdnet.model_files import ModelFiles
from hpc_radr.embedding_cache import Embeddings
from hpc_radr.estimate import Calibration, fit_extraction, fit_run_cost
from hpc_radr.sweep import Configuration, TrainingSettings

SAMPLE_CLIPS = 32
MAX_PROBE_SAMPLES = 20_000  # the fits stop growing here; the model carries the rest (it is linear in samples)
SHORT_EPOCHS = 2
LONG_FIT_S = 10.0  # the long fit's budget in seconds; its epochs are estimated from the short fit at full size


def _cpu_seconds(children: bool = True) -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    if children:
        ended = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += ended.ru_utime + ended.ru_stime
    return total


def sample_files(files: list[Path], count: int = SAMPLE_CLIPS) -> list[Path]:
    """``count`` files spread evenly over ``files`` (all of them when fewer)."""
    if len(files) <= count:
        return list(files)
    picks = np.linspace(0, len(files) - 1, count).round().astype(int)
    return [files[k] for k in sorted(set(picks.tolist()))]


def _drawn(rng: np.random.Generator, n: int, positives: int, dims: int = 1024) -> Embeddings:
    """Embeddings whose classes overlap (means one standard deviation apart on a few dimensions)."""
    y = np.zeros((n, 1), dtype="float32")
    y[:positives] = 1.0
    x = rng.standard_normal((n, dims)).astype("float32")
    x[:positives, :16] += 1.0
    return Embeddings(x, y, ["probe"])


def probe(clips: list[Path], model: ModelFiles, settings: TrainingSettings, largest_epoch: int, workers: int,
          threads: int) -> Calibration:
    """Measure extraction on a sample of ``clips`` and training at up to ``largest_epoch``
    samples per epoch (the sweep's largest run), with the sweep's batch size and learning rate; extraction with
    ``workers`` processes and training with ``threads``, as the sweep's tasks will. Must run before anything
    else in the process imports TensorFlow (its threads are set at import)."""
    from hpc_radr.birdnet import runtime

    with open(os.devnull, "w") as sink, runtime.stderr_into(sink), contextlib.redirect_stdout(io.StringIO()):
        started = time.perf_counter()
        runtime.limit_threads(threads)  # imports TensorFlow: part of the import a task pays
        runtime.import_birdnet()
        import_s = time.perf_counter() - started
        return _probe(clips, model, settings, largest_epoch, workers, threads, import_s)


def _probe(clips: list[Path], model: ModelFiles, settings: TrainingSettings, largest_epoch: int, workers: int,
           threads: int, import_s: float) -> Calibration:
    """``probe`` once TensorFlow is imported, its printing caught (per fit, per export)."""
    from hpc_radr.birdnet import runtime, training
    from hpc_radr.birdnet.embeddings import extract_clips, warm_statistics

    runtime.configure(model, settings.crop_mode, settings.overlap, workers)
    sample = sample_files(clips, SAMPLE_CLIPS)
    # Unmeasured: librosa's JIT compiles into its cache on a machine's first extraction, in every worker; that
    # one-time cost would otherwise be read as every call's start-up.
    extract_clips(sample[:max(1, workers)], model, settings.crop_mode, settings.overlap, workers)
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    extracted = extract_clips(sample, model, settings.crop_mode, settings.overlap, workers)
    call = {"clips": len(sample), "workers": workers, "extract_s": time.perf_counter() - started,
            "extract_cpu_s": _cpu_seconds() - cpu_started, **warm_statistics(extracted)}
    with tempfile.TemporaryDirectory(prefix="hpc-radr-probe-") as scratch:
        rng = np.random.default_rng(0)
        fit_settings = settings.model_copy(update={"evaluation": "held_out"})
        test = _drawn(rng, 100, 20)
        largest = max(8, min(largest_epoch, MAX_PROBE_SAMPLES))
        model_out = Path(scratch) / "probe.tflite"

        def fit(n: int, count: int) -> tuple[float, float, float, float]:
            """(epochs run, samples, wall, CPU-seconds) of one fit of ``count`` epochs on ``n`` samples."""
            train = _drawn(rng, n, max(2, n // 4))
            config = Configuration(index=0, dataset="probe", upsampling_mode="repeat", upsampling_ratio=0.0,
                                   focal_loss=False, seed=1, run_id="probe")
            started, cpu_started = time.perf_counter(), _cpu_seconds(children=False)
            outcome = training.train_and_evaluate(config, fit_settings.model_copy(update={"epochs": count}),
                                                  train, test, model_out)
            return (float(outcome["epochs_run"]), float(n), time.perf_counter() - started,
                    _cpu_seconds(children=False) - cpu_started)

        fit(8, 1)  # unmeasured: a process's first fit also pays TensorFlow's one-time set-up
        fits = [fit(max(8, largest // 4), SHORT_EPOCHS), fit(largest, SHORT_EPOCHS)]
        epoch_bound = fits[-1][2] / SHORT_EPOCHS  # start-up included: an upper bound on one epoch's wall time
        long_epochs = max(2 * SHORT_EPOCHS, min(settings.epochs, int(LONG_FIT_S / max(epoch_bound, 1e-3))))
        fits.append(fit(largest, long_epochs))
        epochs, samples, walls, cpus = (list(column) for column in zip(*fits, strict=True))
    run_wall, _ = fit_run_cost(epochs, samples, walls)
    run_cpu, _ = fit_run_cost(epochs, samples, cpus)
    return Calibration(
        source="probe",
        described=(f"a probe on this data: {len(sample)} clips extracted, 3 fits of up to {largest} samples per "
                   f"epoch and {long_epochs} epochs, extraction on {workers} CPUs, training on {threads}"),
        **fit_extraction([call]), import_s=import_s, run_wall=run_wall,
        run_cpu=run_cpu, epoch_fraction=1.0,
        spread=0.15,  # three fits cannot show their own spread; the benchmark's misses were 1-24% (results/estimate)
        runs=len(fits), samples_range=(float(min(samples)), float(largest)))
