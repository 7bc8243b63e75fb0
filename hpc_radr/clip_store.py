"""The clip store: the embeddings of every clip of a sweep, extracted once and shared by every dataset and the
test set; each unit's arrays are assembled from it in the order BirdNET's own extraction gives them.

Layout (``RUN_DIR/clips/``)::

    index.json      clip key -> [shard, first row, end row]: a clip is in the store once the index names it
    <shard>.npz     one extraction batch: x (rows, 1024) float32, its clips' keys, each clip's row bounds, and
                    the CPU-seconds each clip cost its worker
    <shard>.json    how the batch was extracted (clips, rows, workers, wall and CPU seconds, host)

A shard is written whole (atomically) before the index names its clips, and the index is rewritten atomically
under a lock, so concurrent extraction tasks add their shards without losing each other's, and a task killed
half-way leaves at most a shard nobody names. A clip key covers everything an embedding depends on: the
sha256 of the file's bytes (a file shared by two datasets, or copied under another name, is one clip), the
model's sha256 and the extraction settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpc_radr.atomic import write_atomic
from hpc_radr.datasets import EmbeddingUnit
from hpc_radr.embedding_cache import CacheError, Embeddings, extraction_settings
from hpc_radr.locks import locked
from hpc_radr.manifest import Manifest, unit_dataset
from hpc_radr.run_dir import RunDir

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Clip:
    """One distinct clip of a sweep: its key, the first file of the sweep holding it, that file's sha256, and
    the extraction settings it is stored under (a sweep with crop_mode or overlap axes has each file under each)."""

    key: str
    path: Path
    content: str
    extraction: tuple[tuple[str, object], ...]


def clip_key(content: str, model_fingerprint: str, extraction: dict) -> str:
    """The store's key of a clip: its bytes, the model and the extraction settings."""
    text = json.dumps(["clip", content, model_fingerprint, extraction], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def unit_of(manifest: Manifest, name: str) -> EmbeddingUnit:
    """The files of unit ``name`` as the dataset they were inspected as at submit (so its fingerprint compares)."""
    spec = manifest.units[name]
    positives, negatives = tuple(Path(p) for p in spec.positives), tuple(Path(p) for p in spec.negatives)
    return EmbeddingUnit(unit_dataset(name), positives, negatives)


def unit_extraction(manifest: Manifest, name: str) -> dict:
    """The extraction settings of a unit: its own in a sweep that varies them, else the sweep's."""
    return manifest.units[name].extraction or extraction_settings(manifest.sweep.training)


def _settings_id(extraction: dict) -> str:
    return json.dumps(extraction, sort_keys=True)


ClipKeys = dict[str, dict[str, str]]  # extraction settings (as JSON) -> file path -> clip key


def clip_keys(manifest: Manifest) -> ClipKeys:
    """The clip key of every file of the manifest under each extraction setting its units use (computed once,
    passed to the functions below)."""
    content = manifest.record.clip_content
    if not content:
        raise CacheError(f"{manifest.run_dir.manifest}: submitted by an hpc-radr without the clip store (no clip "
                         "fingerprints); its missing embeddings cannot be extracted: submit into a new run directory")
    model = manifest.record.model.sha256
    settings = {_settings_id(found): found for found in (unit_extraction(manifest, name) for name in manifest.units)}
    return {sid: {path: clip_key(digest, model, extraction) for path, digest in content.items()}
            for sid, extraction in settings.items()}


def unit_rows(manifest: Manifest, name: str, keys: ClipKeys) -> list[tuple[str, float]]:
    """(clip key, label) of each file of the unit, in BirdNET's order (``EmbeddingUnit.rows``)."""
    data, own = manifest.sweep.data, keys[_settings_id(unit_extraction(manifest, name))]
    return [(own[str(path)], label)
            for path, label in unit_of(manifest, name).rows(data.positive_class, data.negative_class)]


def sweep_clips(manifest: Manifest, keys: ClipKeys) -> list[Clip]:
    """Every distinct clip of the sweep, once, in a fixed order (units in manifest order, each in BirdNET's
    order): extraction shards are ranges of this list."""
    content = manifest.record.clip_content
    data = manifest.sweep.data
    clips: dict[str, Clip] = {}
    for name in manifest.units:
        extraction = unit_extraction(manifest, name)
        own = keys[_settings_id(extraction)]
        for path, _ in unit_of(manifest, name).rows(data.positive_class, data.negative_class):
            key = own[str(path)]
            if key not in clips:
                clips[key] = Clip(key, path, content[str(path)], tuple(sorted(extraction.items())))
    return list(clips.values())


class ClipStore:
    """The store of one run directory (``RunDir.clips``)."""

    def __init__(self, run_dir: RunDir) -> None:
        self.folder = run_dir.clips
        self.index_file = run_dir.clip_index

    def index(self) -> dict[str, list]:
        """Clip key -> [shard, first row, end row] of every clip stored whole."""
        try:
            return json.loads(self.index_file.read_text())["clips"]
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CacheError(f"{self.index_file}: unreadable clip store index ({err})") from err

    def add(self, keys: list[str], rows: list[np.ndarray], cpu_s: list[float], stats: dict) -> str:
        """Store one extraction batch (``rows[i]``: the rows of clip ``keys[i]``) and name its clips in the
        index; returns the shard's name. A clip the index names already keeps its entry (same key, same rows)."""
        import numpy as np

        counts = [len(r) for r in rows]
        bounds = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        filled = [r for r in rows if len(r)]
        x = np.concatenate(filled) if filled else np.zeros((0, 0), dtype="float32")
        name = "shard-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]

        def write(handle) -> None:
            np.savez(handle, x=x, keys=np.array(keys), bounds=bounds, cpu_s=np.array(cpu_s, dtype=np.float64))

        write_atomic(self.folder / f"{name}.npz", write)
        text = json.dumps({"shard": name, "clips": len(keys), "rows": int(bounds[-1]),
                           "clip_cpu_s": float(sum(cpu_s)), **stats}, indent=2) + "\n"
        write_atomic(self.folder / f"{name}.json", lambda handle: handle.write(text.encode()))
        with locked(self.folder / "index.lock"):
            index = self.index()
            for k, key in enumerate(keys):
                index.setdefault(key, [name, int(bounds[k]), int(bounds[k + 1])])
            encoded = json.dumps({"clips": index}, separators=(",", ":")).encode()
            write_atomic(self.index_file, lambda handle: handle.write(encoded))
        return name

    def assemble(self, rows: list[tuple[str, float]], labels: list[str]) -> Embeddings:
        """The arrays of ``rows`` ((clip key, label) in order): each clip's rows, labelled, one clip after another,
        as BirdNET's ``_load_training_data`` builds them from the same clips in the same order."""
        import numpy as np

        index = self.index()
        missing = sorted({key for key, _ in rows if key not in index})
        if missing:
            raise CacheError(f"{self.folder}: {len(missing)} clips are not in the clip store "
                             f"(first {missing[0][:12]}...)")
        shards = {name: self._shard(name) for name in sorted({index[key][0] for key, _ in rows})}
        xs, ys = [], []
        for key, label in rows:
            name, start, stop = index[key]
            x, bounds = shards[name]
            if bounds.get(key) != (start, stop):
                raise CacheError(f"{self.folder / name}.npz does not hold clip {key[:12]}... where the index says")
            if stop > start:
                xs.append(x[start:stop])
                ys.append(np.full((stop - start, 1), label, dtype="float32"))
        if not xs:
            return Embeddings(np.array([], dtype="float32"), np.array([], dtype="float32"), labels)
        return Embeddings(np.concatenate(xs), np.concatenate(ys), labels)

    def _shard(self, name: str) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
        """A shard's rows and each of its clips' row bounds."""
        import numpy as np

        path = self.folder / f"{name}.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                x, keys, bounds = data["x"], [str(k) for k in data["keys"]], data["bounds"].tolist()
        except (OSError, KeyError, ValueError) as err:
            raise CacheError(f"{path}: unreadable clip store shard ({err})") from err
        return x, {key: (bounds[k], bounds[k + 1]) for k, key in enumerate(keys)}

    def extractions(self) -> list[dict]:
        """How each shard the index names was extracted (its ``<shard>.json``), oldest first."""
        named = sorted({entry[0] for entry in self.index().values()})
        found = [json.loads((self.folder / f"{name}.json").read_text()) for name in named]
        return sorted(found, key=lambda stats: stats.get("finished_at", ""))
