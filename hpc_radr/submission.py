"""What a submission has to do: freeze the manifest, then find the clips and runs still missing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from hpc_radr.clip_store import ClipStore, clip_keys, sweep_clips, unit_rows
from hpc_radr.latest import DEFAULT_RUNS_ROOT
from hpc_radr.locks import locked
from hpc_radr.manifest import Manifest, freeze
from hpc_radr.planning import existing, plan_manifest
from hpc_radr.results import has_result
from hpc_radr.run_dir import RunDir, RunDirError


@dataclass(frozen=True)
class Work:
    """The part of a frozen sweep that still has to run."""

    manifest: Manifest
    missing_clips: list[int]  # positions in the sweep's clip list (clip_store.sweep_clips) of clips to extract
    clip_count: int  # the sweep's distinct clips (0 when no unit needs any)
    pending_runs: list[str]
    done_runs: list[str]


def largest_unit(manifest: Manifest) -> int:
    """Clips of the sweep's largest embedding unit: the most a task holds in memory, which sizes memory defaults."""
    return max((len(u.positives) + len(u.negatives) for u in manifest.units.values()), default=0)


def prepare(sweep: Path, run_dir: Path | None, data: Path | None, model: Path | None, dedupe: bool,
            overrides: dict, write: bool = True) -> Manifest:
    """Validate the sweep, data and model against the run directory, and with ``write`` freeze the manifest.

    Without ``write`` nothing is written: callers freeze (``manifest.freeze``) once nothing can fail any more."""
    record, parsed = plan_manifest(sweep, data, model, dedupe, overrides)
    target = RunDir(run_dir or DEFAULT_RUNS_ROOT / parsed.name)
    found = existing(target, record)
    planned = found or Manifest(record, target)
    return freeze(planned) if write else planned


def remaining(manifest: Manifest, force: bool = False, exclude: set[str] = frozenset()) -> Work:
    """Runs without a valid result (all runs when forced), less ``exclude``, and the clips not yet in the clip
    store that the units of those runs still need (a unit whose cache exists needs none)."""
    run_dir = manifest.run_dir
    pending, done = [], []
    for config in manifest.runs:
        if config.run_id in exclude:
            continue
        (done if has_result(run_dir, config.run_id) and not force else pending).append(config.run_id)
    needed = {unit for r in pending for unit in manifest.units_of(manifest.run(r))}
    uncached = [name for name, spec in manifest.units.items()
                if name in needed and not run_dir.cache_file(spec.key).exists()]
    if not uncached:
        return Work(manifest, [], 0, pending, done)
    keys = clip_keys(manifest)
    clips, stored = sweep_clips(manifest, keys), ClipStore(run_dir).index()
    wanted = {key for name in uncached for key, _ in unit_rows(manifest, name, keys)}
    missing = [k for k, clip in enumerate(clips) if clip.key in wanted and clip.key not in stored]
    return Work(manifest, missing, len(clips), pending, done)


@contextmanager
def submission_lock(run_dir: RunDir) -> Iterator[None]:
    """One submission at a time per run directory; a second one is refused, not queued."""
    with ExitStack() as held:
        try:
            held.enter_context(locked(run_dir.path / ".submit.lock", wait=False))
        except BlockingIOError:
            raise RunDirError(f"{run_dir.path}: another submission into this run directory is in progress; "
                              "wait for it to return") from None
        yield


def sweep_drift(manifest: Manifest) -> str | None:
    """A warning when the sweep file on disk no longer matches the frozen copy (the frozen one is used)."""
    path = Path(manifest.record.sweep_file)
    try:
        current = path.read_text(encoding="utf-8")
    except OSError:
        return f"{path} is gone; using the copy frozen at submit"
    if current != manifest.record.sweep_text:
        return f"{path} changed since submit; using the copy frozen at submit ({manifest.run_dir.path / 'sweep.toml'})"
    return None
