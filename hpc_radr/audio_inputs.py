"""The audio `hpc-radr analyze` is given, found and checked before TensorFlow loads.

Folders are searched recursively the way BirdNET-Analyzer 2.4 does (``os.walk``, its extensions, names starting
with "." skipped). BirdNET names each file's result tables by its path below the folder given (a file given by
itself: by its name), with the extension dropped, so ``a.wav`` and ``a.flac`` of one folder would overwrite each
other's tables: such clashes are refused here rather than found missing afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hpc_radr.datasets import AUDIO_EXTENSIONS, audio_problem
from hpc_radr.errors import HpcRadrError

SHOWN = 3  # problems named in the one-line error; the rest are counted


class AudioInputError(HpcRadrError, ValueError):
    """Audio that cannot be analyzed: missing, not audio, unreadable, none found, or clashing result names."""


@dataclass(frozen=True)
class AudioInput:
    """One path given on the command line: BirdNET's input path and the audio files under it (sorted)."""

    root: Path
    files: tuple[Path, ...]

    def result_name(self, file: Path) -> str:
        """The name BirdNET gives the file's tables, before its suffixes (``.BirdNET.results.csv`` ...)."""
        below = file.name if file == self.root else str(file.relative_to(self.root))
        return below.rsplit(".", 1)[0]


def _is_audio_name(name: str) -> bool:
    return not name.startswith(".") and name.rsplit(".", 1)[-1].lower() in AUDIO_EXTENSIONS


def _walk(folder: Path) -> list[Path]:
    return sorted(Path(root) / name for root, _, names in os.walk(folder) for name in names if _is_audio_name(name))


def _raise(problems: list[str]) -> None:
    shown = "; ".join(problems[:SHOWN])
    more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    raise AudioInputError(f"{shown}{more}; nothing was analyzed")


def find_audio(paths: list[Path]) -> list[AudioInput]:
    """Each path as an AudioInput, or one error listing every problem found (the first few by name)."""
    inputs, problems = [], []
    for given in paths:
        path = Path(os.path.abspath(given.expanduser()))  # absolute, symlinks kept: BirdNET names what it is given
        if path.is_dir():
            files = _walk(path)
            if not files:
                problems.append(f"{path}: no audio files found (BirdNET reads {', '.join(sorted(AUDIO_EXTENSIONS))})")
        elif path.is_file():
            files = [path]
        else:
            problems.append(f"{path}: no such file or folder")
            continue
        problems += [p for p in map(audio_problem, files) if p]
        inputs.append(AudioInput(path, tuple(files)))
    if not paths:
        problems.append("no audio given")
    if problems:
        _raise(problems)
    seen: dict[str, Path] = {}
    for entry in inputs:
        for file in entry.files:
            name = entry.result_name(file)
            if name in seen:
                problems.append(f"{seen[name]} and {file} would write the same result tables ({name}.BirdNET.*)")
            seen.setdefault(name, file)
    if problems:
        _raise([*problems[:-1], problems[-1] + "; analyze them into separate --out folders"])
    return inputs
