"""Embedding caches: one ``.npz`` per embedding unit (a dataset, or the test set), keyed by what it was built
from and checked on load. A unit's cache holds its arrays as training reads them, assembled from the clip store
(``hpc_radr.clip_store``), where each clip was extracted once.

BirdNET's own cache trusts any file; these carry their key inside and are refused when it differs.
Writes are atomic and serialized by a lock file, so concurrent jobs never write one cache together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpc_radr.atomic import write_atomic
from hpc_radr.errors import HpcRadrError
from hpc_radr.locks import locked

if TYPE_CHECKING:
    import numpy as np  # imported where arrays are read or written: status and collect never need it

    from hpc_radr.sweep import TrainingSettings


class CacheError(HpcRadrError, ValueError):
    """A cache file that does not belong to the data it is asked for."""


@dataclass(frozen=True)
class Embeddings:
    """Embeddings of one unit: ``x`` (N, 1024) float32, ``y`` (N, 1) float32 labels."""

    x: np.ndarray
    y: np.ndarray
    labels: list[str]

    @property
    def n_positive(self) -> int:
        return int(self.y[:, 0].sum())

    @property
    def n_negative(self) -> int:
        return int(len(self.y) - self.n_positive)


def extraction_settings(settings: TrainingSettings) -> dict:
    """The training settings that change an embedding (every other one changes only the fit)."""
    return {"crop_mode": settings.crop_mode, "overlap": settings.overlap}


def cache_key(data_fingerprint: str, model_fingerprint: str, extraction: dict) -> str:
    """Everything that changes an embedding: the clips, the model and the extraction settings."""
    text = json.dumps([data_fingerprint, model_fingerprint, extraction], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def save(path: Path, embeddings: Embeddings, key: str) -> None:
    import numpy as np

    def write(handle) -> None:
        np.savez(handle, x=embeddings.x, y=embeddings.y, labels=np.array(embeddings.labels), key=np.array(key))

    write_atomic(path, write)


def load(path: Path, key: str) -> Embeddings:
    """Load a cache, refusing one built from anything else than ``key`` says."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            found = str(data["key"])
            if found != key:
                raise CacheError(f"{path}: cache was built from other data or settings "
                                 f"(key {found[:12]}..., expected {key[:12]}...); refusing it")
            return Embeddings(data["x"], data["y"], [str(v) for v in data["labels"]])
    except (OSError, KeyError, ValueError) as err:
        if isinstance(err, CacheError):
            raise
        raise CacheError(f"{path}: unreadable embedding cache ({err})") from err


def stats_file(path: Path) -> Path:
    """Beside each cache: how it was assembled (files, clips, rows, seconds); informational."""
    return path.with_suffix(".json")


def write_stats(path: Path, stats: dict) -> None:
    """Record the extraction statistics of the cache ``path`` (atomically; a failure to write is ignored)."""
    text = json.dumps(stats, indent=2) + "\n"
    try:
        write_atomic(stats_file(path), lambda handle: handle.write(text.encode()))
    except OSError:
        pass


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the lock that guards building ``path``; a second builder waits, then finds the cache made."""
    with locked(path.with_name(path.name + ".lock")):
        yield
