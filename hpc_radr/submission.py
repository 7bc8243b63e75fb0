"""What a submission has to do: freeze the manifest, then find the caches and runs still missing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpc_radr import manifest as manifests
from hpc_radr.manifest import Manifest, RunDir
from hpc_radr.results import has_result


@dataclass(frozen=True)
class Work:
    """The part of a frozen sweep that still has to run."""

    manifest: Manifest
    missing_units: list[str]
    pending_runs: list[str]
    done_runs: list[str]


def prepare(sweep: Path, run_dir: Path | None, data: Path | None, model: Path | None, dedupe: bool,
            overrides: dict) -> Manifest:
    """Validate the sweep, data and model, then create (or reuse) the run directory. Nothing is written on error."""
    raw, parsed = manifests.plan_manifest(sweep, data, model, dedupe, overrides)
    if run_dir is None:
        run_dir = manifests.DEFAULT_RUNS_ROOT / parsed.name
    frozen = manifests.freeze(RunDir(run_dir), raw)
    manifests.point_latest(frozen.run_dir)
    return frozen


def remaining(manifest: Manifest, force: bool = False) -> Work:
    """Units without a cache and runs without a valid result (all runs when forced)."""
    run_dir = manifest.run_dir
    missing_units = [name for name, spec in manifest.units.items() if not run_dir.cache_file(spec["key"]).exists()]
    pending, done = [], []
    for config in manifest.runs:
        (done if has_result(run_dir, config.run_id) and not force else pending).append(config.run_id)
    return Work(manifest, missing_units, pending, done)
