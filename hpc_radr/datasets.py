"""Source data: checking the tiered layout and materializing BirdNET's folder layout without copying audio.

Source layout (``<positive>`` and ``<negative>`` come from the sweep's ``[data]`` table, RADR and noise by default)::

    SOURCE/train/<positive>/<tier>/*.wav   positives, one folder per annotation-quality tier
    SOURCE/train/<negative>/*.wav          non-event clips, shared by every dataset
    SOURCE/test/<positive>/*.wav           the held-out test set, shared by every configuration
    SOURCE/test/<negative>/*.wav

A dataset is materialized as ``<positive>/`` (symlinks to the files of its tiers) plus ``<negative>/``,
the layout in which BirdNET trains a binary classifier; ``EmbeddingUnit.rows`` gives the order in which BirdNET
walks that layout, so that arrays assembled clip by clip come out in BirdNET's own order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from hpc_radr.errors import HpcRadrError
from hpc_radr.sweep import TEST_UNIT, Sweep, slug

# BirdNET-Analyzer 2.4's accepted extensions (config.ALLOWED_FILETYPES).
AUDIO_EXTENSIONS = frozenset({"wav", "flac", "mp3", "ogg", "m4a", "wma", "aiff", "aif"})
# Formats libsndfile reads, so their headers can be checked cheaply before anything runs.
_SNDFILE_EXTENSIONS = frozenset({"wav", "flac", "ogg", "aiff", "aif"})


class DataError(HpcRadrError, ValueError):
    """The source data cannot be used; the message lists every problem found."""


@dataclass(frozen=True)
class EmbeddingUnit:
    """A set of labelled clips whose embeddings are extracted together and cached as one file."""

    name: str
    positives: tuple[Path, ...]
    negatives: tuple[Path, ...]

    @property
    def fingerprint(self) -> str:
        """Changes when any file is added, removed, resized or rewritten (cheap: file metadata only)."""
        digest = hashlib.sha256(self.name.encode())
        for label, files in (("pos", self.positives), ("neg", self.negatives)):
            for path in files:
                stat = path.stat()
                digest.update(f"\0{label}\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
        return digest.hexdigest()

    def rows(self, positive_class: str, negative_class: str) -> list[tuple[Path, float]]:
        """Every file with its label (1.0 positive, 0.0 negative) in the order BirdNET-Analyzer 2.4's
        ``_load_training_data`` reads the unit's materialized layout: class folders sorted by name, then each
        folder's entries sorted by name (``link_name``); each file gives its rows there one after another."""
        classes = {positive_class: (self.positives, 1.0), negative_class: (self.negatives, 0.0)}
        rows: list[tuple[Path, float]] = []
        for folder in sorted(classes):
            files, label = classes[folder]
            rows += [(path, label) for path in sorted(files, key=link_name)]
        return rows


def link_name(source: Path) -> str:
    """A file's name in a materialized class folder. Tier folders may hold equal file names, so the parent
    folder's name is prefixed to keep the links of one class distinct."""
    return f"{source.parent.name}__{source.name}"


def content_fingerprint(path: Path) -> str:
    """sha256 of the file's bytes: what an embedding depends on, wherever the file lies and whenever written."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()

@dataclass(frozen=True)
class Inventory:
    """The checked source data."""

    root: Path
    tiers: dict[str, tuple[Path, ...]]
    negatives: tuple[Path, ...]
    test_positives: tuple[Path, ...]
    test_negatives: tuple[Path, ...]

    def unit(self, dataset: str, sweep: Sweep) -> EmbeddingUnit:
        if dataset == TEST_UNIT:
            return EmbeddingUnit(TEST_UNIT, self.test_positives, self.test_negatives)
        spec = next(d for d in sweep.datasets if d.name == dataset)
        positives = tuple(p for tier in spec.tiers for p in self.tiers[tier])
        return EmbeddingUnit(dataset, positives, self.negatives)

    def units(self, sweep: Sweep) -> list[EmbeddingUnit]:
        """One unit per dataset, plus the shared test set."""
        return [self.unit(d.name, sweep) for d in sweep.datasets] + [self.unit(TEST_UNIT, sweep)]


def audio_problem(path: Path) -> str | None:
    """Why BirdNET could not read ``path`` as audio, or None. Headers are checked where libsndfile reads the
    format (cheap, no decoding); other formats (mp3, m4a, wma) are only known bad once BirdNET decodes them."""
    import soundfile

    extension = path.suffix.lower().lstrip(".")
    if extension not in AUDIO_EXTENSIONS:
        return f"{path}: not an audio file (BirdNET reads {', '.join(sorted(AUDIO_EXTENSIONS))})"
    if extension in _SNDFILE_EXTENSIONS:
        try:
            info = soundfile.info(str(path))
        except Exception as err:  # libsndfile raises several types for corrupt headers
            return f"{path}: unreadable audio ({err})"
        if info.frames == 0:
            return f"{path}: audio file holds no samples"
    return None


def _audio_files(folder: Path, problems: list[str]) -> tuple[Path, ...]:
    """Audio files directly in ``folder`` (sorted), reporting anything BirdNET could not read."""
    files = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.is_dir():
            continue
        problem = audio_problem(entry)
        if problem:
            problems.append(problem)
            continue
        files.append(entry.resolve())
    return tuple(files)


def _class_folder(folder: Path, what: str, problems: list[str]) -> tuple[Path, ...]:
    if not folder.is_dir():
        problems.append(f"{folder}: missing ({what})")
        return ()
    files = _audio_files(folder, problems)
    if not files:
        problems.append(f"{folder}: no audio files ({what})")
    return files


def inspect(root: Path, sweep: Sweep) -> Inventory:
    """Check the whole source layout for this sweep and return what it holds, or raise listing every problem."""
    root = root.expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    root = root.resolve()
    pos, neg = sweep.data.positive_class, sweep.data.negative_class
    problems: list[str] = []
    wanted_tiers = list(dict.fromkeys(t for d in sweep.datasets for t in d.tiers))
    tiers = {
        tier: _class_folder(root / "train" / pos / tier, f"positive tier '{tier}'", problems)
        for tier in wanted_tiers
    }
    negatives = _class_folder(root / "train" / neg, "negative class for training", problems)
    test_positives = _class_folder(root / "test" / pos, "positive test clips", problems)
    test_negatives = _class_folder(root / "test" / neg, "negative test clips", problems)
    if problems:
        raise DataError(f"{root}: the data cannot be used:\n" + "\n".join(f"  {p}" for p in problems))
    return Inventory(root, tiers, negatives, test_positives, test_negatives)


def materialize(unit: EmbeddingUnit, positive_class: str, negative_class: str, dest: Path) -> Path:
    """Lay ``unit`` out as BirdNET's class folders under ``dest`` with symlinks; returns the folder. Training reads
    units assembled from the clip store; this is the layout BirdNET's own extraction reads, for comparing with it
    (the exactness tests, the naive benchmark)."""
    folder = dest / slug(unit.name)
    for label, files in ((positive_class, unit.positives), (negative_class, unit.negatives)):
        class_dir = folder / label
        class_dir.mkdir(parents=True, exist_ok=True)
        for source in files:
            link = class_dir / link_name(source)
            if not link.is_symlink():
                os.symlink(source, link)
    return folder
