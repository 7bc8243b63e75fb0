"""Embedding extraction, clip by clip, with BirdNET-Analyzer's own per-file loader (audio reading, cropping,
TFLite embeddings): the function its ``_load_training_data`` maps over every file of a class folder."""

from __future__ import annotations

import importlib
import signal
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from hpc_radr.birdnet.model_files import ModelFiles
from hpc_radr.birdnet.runtime import configure
from hpc_radr.errors import HpcRadrError


class ExtractionError(HpcRadrError, RuntimeError):
    """Some clips gave no embedding (BirdNET only prints such errors and skips the file)."""


@dataclass(frozen=True)
class ClipEmbeddings:
    """The rows one clip gives (several with crop mode "segments"), and the CPU-seconds its worker spent on it."""

    x: np.ndarray  # (rows, 1024) float32; (0,) when BirdNET gave none
    cpu_s: float
    # The first clip of each worker also pays the worker's start-up (BirdNET's model, the audio libraries and
    # librosa's compiled functions loaded: about 30 clips' worth); cost estimates take the rate from the others.
    first_in_worker: bool = False


_FRESH_WORKER = False  # set in each pool worker at its start, cleared by its first clip


def _worker_started() -> None:
    global _FRESH_WORKER
    _FRESH_WORKER = True


def _embed_one(path: str, config: dict) -> tuple[np.ndarray, float, bool]:
    """In a pool worker: BirdNET's loader on one file, timed in that worker's CPU time."""
    global _FRESH_WORKER
    first, _FRESH_WORKER = _FRESH_WORKER, False
    utils = importlib.import_module("birdnet_analyzer.train.utils")  # looked up per call: its module, not a copy
    started = time.process_time()
    rows, _ = utils._load_audio_file(path, np.zeros((1,), dtype="float32"), config)
    # the expression _load_training_data applies to its rows: the same float32 values
    return np.array(rows, dtype="float32"), time.process_time() - started, first


def warm_statistics(clips: list[ClipEmbeddings]) -> dict:
    """The clips of one extraction call that were not a worker's first, and their CPU-seconds: the per-clip
    rate without the workers' start-up."""
    warm = [clip.cpu_s for clip in clips if not clip.first_in_worker]
    return {"warm_clips": len(warm), "warm_clip_cpu_s": float(sum(warm))}


def extract_clips(paths: list[Path], model: ModelFiles, crop_mode: str, overlap: float,
                  workers: int) -> list[ClipEmbeddings]:
    """Embed ``paths`` in ``workers`` processes, in order, one result per path.

    A clip's embeddings depend only on its audio and the settings (BirdNET embeds every crop on its own, batch
    size 1, one TFLite thread), so which process or batch extracts a clip does not change its rows."""
    import birdnet_analyzer.config as cfg

    configure(model, crop_mode, overlap, workers)
    config = cfg.get_config()
    # BirdNET's own pool is forked and ended with SIGTERM like this one; submitit's job handler (inherited by the
    # fork) ignores SIGTERM, which left the pool hanging. Forked workers get the default handler instead.
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with Pool(max(1, workers), initializer=_worker_started) as pool:
            found = pool.starmap(_embed_one, [(str(path), config) for path in paths], chunksize=1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    clips = [ClipEmbeddings(x, cpu_s, first) for x, cpu_s, first in found]
    if crop_mode in ("center", "first"):
        failed = [str(path) for path, clip in zip(paths, clips, strict=True) if len(clip.x) != 1]
        if failed:
            raise ExtractionError(f"{len(failed)} of {len(paths)} clips gave no embedding ({', '.join(failed[:5])}"
                                  f"{', ...' if len(failed) > 5 else ''}); BirdNET's messages above say why")
    return clips
