"""The run directory and its manifest: the sweep frozen at submit, so every later step means the same runs.

Layout of a run directory::

    manifest.json      configurations, runs, data and model fingerprints, settings (written once, at submit)
    sweep.toml         the sweep file exactly as submitted
    data/              BirdNET class-folder layouts of each embedding unit (symlinks, no audio copied)
    cache/             one embedding cache per unit
    results/<run>.json one whole result per finished run (atomic)
    failures/<run>.json the error of the last failed attempt of a run
    models/<run>.tflite trained classifier heads
    logs/<run>.log     BirdNET's output per run; submitit/ holds the executors' own files
    results.csv, results.parquet   written by `hpc-radr collect`
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from hpc_radr import __version__
from hpc_radr.atomic import write_atomic, write_json
from hpc_radr.birdnet.model_files import ModelFiles, default_model, resolve_model
from hpc_radr.datasets import inspect
from hpc_radr.embedding_cache import cache_key
from hpc_radr.sweep import Configuration, Sweep, expand, load_sweep, parse_sweep, unique_runs

MANIFEST_SCHEMA = 1
DEFAULT_RUNS_ROOT = Path("runs")


class RunDirError(ValueError):
    """A run directory that is missing, foreign or inconsistent."""


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    path: Path

    @property
    def manifest(self) -> Path:
        return self.path / "manifest.json"

    @property
    def data(self) -> Path:
        return self.path / "data"

    @property
    def cache(self) -> Path:
        return self.path / "cache"

    @property
    def submitit(self) -> Path:
        return self.path / "submitit"

    def result(self, run_id: str) -> Path:
        return self.path / "results" / f"{run_id}.json"

    def failure(self, run_id: str) -> Path:
        return self.path / "failures" / f"{run_id}.json"

    def log(self, run_id: str) -> Path:
        return self.path / "logs" / f"{run_id}.log"

    def model(self, run_id: str) -> Path:
        return self.path / "models" / f"{run_id}.tflite"

    def cache_file(self, key: str) -> Path:
        return self.cache / f"{key}.npz"


@dataclass(frozen=True)
class Manifest:
    """What was submitted. Loaded by every task, status, resubmit and collect."""

    raw: dict
    run_dir: RunDir

    @cached_property
    def sweep(self) -> Sweep:
        sweep = parse_sweep(self.raw["sweep_text"], str(self.run_dir.path / "sweep.toml"))
        return apply_overrides(sweep, self.raw.get("overrides", {}))

    @cached_property
    def configurations(self) -> list[Configuration]:
        return [Configuration(**c) for c in self.raw["configurations"]]

    @cached_property
    def runs(self) -> list[Configuration]:
        """Unique runs in index order; position k is what array task k of a whole-sweep array trains."""
        return unique_runs(self.configurations)

    @property
    def model(self) -> ModelFiles:
        return ModelFiles(Path(self.raw["model"]["model"]), Path(self.raw["model"]["labels"]))

    @property
    def units(self) -> dict[str, dict]:
        return self.raw["units"]

    @property
    def data_source(self) -> Path:
        return Path(self.raw["data_source"])

    def run(self, run_id: str) -> Configuration:
        for config in self.runs:
            if config.run_id == run_id:
                return config
        raise RunDirError(f"{self.run_dir.path}: no run '{run_id}' in the manifest")


def apply_overrides(sweep: Sweep, overrides: dict) -> Sweep:
    """Command-line changes to the training settings (e.g. fewer epochs for a demo), recorded in the manifest."""
    if not overrides:
        return sweep
    return sweep.model_copy(update={"training": sweep.training.model_copy(update=overrides)})


def _extraction_settings(sweep: Sweep) -> dict:
    return {"crop_mode": sweep.training.crop_mode, "overlap": sweep.training.overlap}


def plan_manifest(sweep_path: Path, data: Path | None, model: Path | None, dedupe: bool,
                  overrides: dict) -> tuple[dict, Sweep]:
    """Validate everything a submission depends on and return the manifest to freeze (nothing is written)."""
    sweep, text = load_sweep(sweep_path)
    sweep = apply_overrides(sweep, overrides)
    if data is None:
        if sweep.data.source is None:
            raise RunDirError(f"{sweep_path}: no data source: set [data].source or pass --data")
        data = (sweep_path.parent / sweep.data.source)
    inventory = inspect(data, sweep)
    model_files = resolve_model(model) if model else default_model()
    model_fingerprint = model_files.fingerprint()
    units = {}
    for unit in inventory.units(sweep):
        fingerprint = unit.fingerprint
        units[unit.name] = {
            "key": cache_key(fingerprint, model_fingerprint, _extraction_settings(sweep)),
            "data_fingerprint": fingerprint,
            "positives": [str(p) for p in unit.positives],
            "negatives": [str(p) for p in unit.negatives],
        }
    raw = {
        "schema": MANIFEST_SCHEMA,
        "hpc_radr_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sweep_file": str(sweep_path.resolve()),
        "sweep_text": text,
        "overrides": overrides,
        "dedupe": dedupe,
        "data_source": str(inventory.root),
        "model": {"model": str(model_files.model), "labels": str(model_files.labels),
                  "sha256": model_fingerprint},
        "units": units,
        "configurations": [c.as_dict() for c in expand(sweep, dedupe)],
    }
    return raw, sweep


def existing(run_dir: RunDir, raw: dict) -> Manifest | None:
    """The run directory's manifest if it froze this same submission; None if there is none yet."""
    if not run_dir.manifest.exists():
        return None
    found = load(run_dir)
    same = (found.raw["configurations"] == raw["configurations"]
            and found.raw["units"] == raw["units"]
            and found.sweep.training == apply_overrides(parse_sweep(raw["sweep_text"], "sweep"),
                                                        raw["overrides"]).training)
    if not same:
        raise RunDirError(
            f"{run_dir.path}: already holds a different submission (sweep, data or settings differ); "
            "choose another --run-dir, or use `hpc-radr resubmit` to finish the frozen one")
    return found


def freeze(manifest: Manifest) -> Manifest:
    """Write a planned manifest into its (new) run directory; the point of no return of a submission."""
    run_dir = manifest.run_dir
    if not run_dir.manifest.exists():
        run_dir.path.mkdir(parents=True, exist_ok=True)
        sweep_text = manifest.raw["sweep_text"].encode("utf-8")
        write_atomic(run_dir.path / "sweep.toml", lambda handle: handle.write(sweep_text))  # whole on a full disk
        write_json(run_dir.manifest, manifest.raw)
    point_latest(run_dir)
    return manifest


def load(run_dir: RunDir) -> Manifest:
    try:
        raw = json.loads(run_dir.manifest.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{run_dir.path}: not a run directory (no manifest.json); "
                          "pass the folder `hpc-radr submit` created") from None
    except (OSError, json.JSONDecodeError) as err:
        raise RunDirError(f"{run_dir.manifest}: unreadable manifest ({err})") from None
    if raw.get("schema") != MANIFEST_SCHEMA:
        raise RunDirError(f"{run_dir.manifest}: manifest schema {raw.get('schema')} is not {MANIFEST_SCHEMA}")
    return Manifest(raw, run_dir)


def resolve_run_dir(path: Path | None) -> RunDir:
    """The given run directory, or the one the last submit pointed ``runs/latest`` at."""
    if path is None:
        latest = DEFAULT_RUNS_ROOT / "latest"
        if not latest.exists():
            raise RunDirError("no RUN_DIR given and no runs/latest here; pass the run directory")
        path = latest.resolve()
    return RunDir(path)


def point_latest(run_dir: RunDir) -> None:
    """Make ``runs/latest`` name this run directory when it lives under ``runs/``."""
    root = DEFAULT_RUNS_ROOT.resolve()
    target = run_dir.path.resolve()
    if target.parent != root:
        return
    link = root / "latest"
    tmp = root / ".latest.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    tmp.replace(link)
