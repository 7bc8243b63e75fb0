"""Pointing BirdNET-Analyzer's global configuration at local model files (imports TensorFlow's stack)."""

from __future__ import annotations

import importlib.metadata
import os

from hpc_radr.birdnet.model_files import ModelFiles


def configure(model: ModelFiles, crop_mode: str, overlap: float, workers: int) -> None:
    """Set what ``train_model()`` would set, without its model download.

    BirdNET keeps its settings in module globals; every entry point of this adapter calls this first.
    """
    import birdnet_analyzer.config as cfg

    cfg.BIRDNET_MODEL_PATH = cfg.MODEL_PATH = str(model.model)
    cfg.BIRDNET_LABELS_FILE = cfg.LABELS_FILE = str(model.labels)
    cfg.SAMPLE_RATE = cfg.BIRDNET_SAMPLE_RATE
    cfg.SIG_LENGTH = cfg.BIRDNET_SIG_LENGTH
    cfg.SAMPLE_CROP_MODE = crop_mode
    cfg.SIG_OVERLAP = overlap
    cfg.CPU_THREADS = max(1, workers)
    cfg.TFLITE_THREADS = 1


def limit_threads(threads: int | None) -> None:
    """Keep TensorFlow to its share of the cores when several workers share a node."""
    if not threads:
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(max(1, threads // 2))


def versions() -> dict[str, str]:
    """Package versions a result depends on (birdnet_analyzer.__version__ is wrong in 2.4.0)."""
    found = {}
    for package in ("hpc-radr", "birdnet-analyzer", "tensorflow", "keras", "numpy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def gpus_seen() -> dict:
    """What the task was given (Slurm's view) and what TensorFlow can use."""
    import tensorflow as tf

    return {
        "tensorflow": [d.name for d in tf.config.list_physical_devices("GPU")],
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "SLURM_JOB_GPUS": os.environ.get("SLURM_JOB_GPUS"),
    }
