"""Embedding extraction with BirdNET-Analyzer's own loader (audio reading, cropping, TFLite embeddings)."""

from __future__ import annotations

import signal
from pathlib import Path

from hpc_radr.birdnet.model_files import ModelFiles
from hpc_radr.birdnet.runtime import configure
from hpc_radr.embedding_cache import Embeddings
from hpc_radr.errors import HpcRadrError


class ExtractionError(HpcRadrError, RuntimeError):
    """Some clips gave no embedding (BirdNET only prints such errors and skips the file)."""


def extract(folder: Path, model: ModelFiles, crop_mode: str, overlap: float, workers: int,
            expected_files: int, positive_class: str) -> Embeddings:
    """Embed every clip under ``folder`` (BirdNET class-folder layout) in ``workers`` processes."""
    import birdnet_analyzer.config as cfg
    from birdnet_analyzer.train.utils import _load_training_data

    configure(model, crop_mode, overlap, workers)
    cfg.TRAIN_DATA_PATH = str(folder)
    cfg.TEST_DATA_PATH = None
    # BirdNET forks a Pool and ends it with SIGTERM; submitit's job handler (inherited by the fork)
    # ignores SIGTERM, which left the pool hanging. Forked workers get the default handler instead.
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        x, y, _, _, labels = _load_training_data(cache_mode=None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not cfg.BINARY_CLASSIFICATION or labels != [positive_class]:
        raise ExtractionError(f"{folder}: expected one class '{positive_class}' plus non-events, BirdNET saw {labels}")
    one_per_file = crop_mode in ("center", "first")
    if one_per_file and len(x) != expected_files:
        raise ExtractionError(f"{folder}: {expected_files - len(x)} of {expected_files} clips gave no embedding; "
                              "BirdNET's messages above name them")
    return Embeddings(x, y, list(labels))
