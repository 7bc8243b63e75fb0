"""Pointing BirdNET-Analyzer's global configuration at local model files (imports TensorFlow's stack)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from hpc_radr import package_versions
from hpc_radr.birdnet.model_files import ModelFiles


def import_birdnet() -> None:
    """Import BirdNET-Analyzer's training modules, keeping the GPUs this task was given.

    ``birdnet_analyzer.model`` sets ``CUDA_VISIBLE_DEVICES=""`` when imported (2.4.0, line 26), which hides every
    GPU from TensorFlow: a task that Slurm gave a GPU then trains on the CPU. CUDA reads the variable when
    TensorFlow first initialises its devices, so putting back the value Slurm set before that is enough. Where
    nothing set it (a laptop, a CPU job on a shared node), BirdNET's empty value stays: no GPU that was not
    granted is used."""
    granted = os.environ.get("CUDA_VISIBLE_DEVICES")
    importlib.import_module("birdnet_analyzer.model")
    importlib.import_module("birdnet_analyzer.train.utils")
    if granted is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = granted


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


@contextmanager
def stderr_into(target: IO) -> Iterator[None]:
    """Send this process' file descriptor 2 (where TensorFlow's C++ code writes) to ``target`` for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(target.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def limit_threads(threads: int | None) -> None:
    """Keep TensorFlow to its share of the cores when several workers share a node."""
    if not threads:
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(max(1, threads // 2))


def versions() -> dict[str, str]:
    """Package versions a result depends on (birdnet_analyzer.__version__ is wrong in 2.4.0)."""
    return package_versions(("hpc-radr", "birdnet-analyzer", "tensorflow", "keras", "numpy"))


def gpus_seen() -> dict:
    """What the task was given (Slurm's view), what TensorFlow could use, and so the device that trained: Keras
    places a model on the first GPU TensorFlow sees, else on the CPU."""
    import tensorflow as tf

    visible = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {
        "tensorflow": visible,
        "trained_on": "GPU:0" if visible else "CPU",
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "SLURM_JOB_GPUS": os.environ.get("SLURM_JOB_GPUS"),
    }
