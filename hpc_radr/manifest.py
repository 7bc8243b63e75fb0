"""The frozen manifest: the sweep as submitted, so every later step (tasks, status, resubmit, collect) means the
same configurations, runs, data and model. Written once, at submit (``freeze``); read by everything after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hpc_radr.atomic import write_atomic, write_json
from hpc_radr.latest import point_latest
from hpc_radr.run_dir import RunDir, RunDirError
from hpc_radr.sweep import TEST_UNIT, Configuration, Sweep, SweepError, parse_sweep, unique_runs, with_analysis

if TYPE_CHECKING:
    from hpc_radr.birdnet.model_files import ModelFiles

MANIFEST_SCHEMA = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UnitSpec(_Frozen):
    """One embedding unit (a dataset, or the test set, under one set of extraction settings): its files and the
    key of its cache."""

    key: str  # cache file name: data, model and extraction settings together
    data_fingerprint: str
    positives: list[str]
    negatives: list[str]
    # crop_mode and overlap of a unit of a sweep that varies them; None: the sweep's [training] values (and the
    # field is not written, so a sweep without extraction axes writes the manifest it wrote before them)
    extraction: dict[str, Any] | None = None


def unit_name(name: str, extraction: str) -> str:
    """The unit of dataset (or test set) ``name`` under ``Configuration.extraction`` ("" : the only one)."""
    return f"{name}@{extraction}" if extraction else name


def unit_dataset(unit: str) -> str:
    """The dataset (or test set) a unit holds: its name without the extraction suffix (dataset names have no @)."""
    return unit.split("@", 1)[0]


class ModelSpec(_Frozen):
    model: str
    labels: str
    sha256: str


class ManifestRecord(_Frozen):
    """manifest.json, field by field, in the order it is written."""

    schema_version: int = Field(alias="schema")
    hpc_radr_version: str
    created_at: str
    sweep_file: str
    sweep_text: str
    overrides: dict[str, Any] = {}
    dedupe: bool = True
    data_source: str
    model: ModelSpec
    units: dict[str, UnitSpec]
    # sha256 of each data file's bytes, by path: what keys its embeddings in the clip store. Empty in a run
    # directory submitted before the clip store: its unit caches can still be read, but no clip extracted.
    clip_content: dict[str, str] = {}
    configurations: list[Configuration]

    def as_json(self) -> dict:
        found = self.model_dump(mode="json", by_alias=True, exclude={"configurations"})
        for unit in found["units"].values():
            if unit["extraction"] is None:
                del unit["extraction"]
        found["configurations"] = [c.as_dict() for c in self.configurations]
        return found


@dataclass(frozen=True)
class Manifest:
    """What was submitted, and where. Loaded by every task, status, resubmit and collect."""

    record: ManifestRecord
    run_dir: RunDir
    # [analysis] settings given after the sweep (``report --precision-target 0.8``), over the sweep file's: only
    # for this reading, never written to manifest.json (see ``with_targets``)
    analysis_overrides: dict[str, Any] = field(default_factory=dict, compare=False)

    @cached_property
    def sweep(self) -> Sweep:
        sweep = parse_sweep(self.record.sweep_text, str(self.run_dir.path / "sweep.toml"))
        return with_analysis(apply_overrides(sweep, self.record.overrides), self.analysis_overrides)

    @property
    def configurations(self) -> list[Configuration]:
        return self.record.configurations

    @cached_property
    def runs(self) -> list[Configuration]:
        """Unique runs in index order; position k is what array task k of a whole-sweep array trains."""
        return unique_runs(self.configurations)

    @property
    def model(self) -> ModelFiles:
        """The model files, for the processes that extract or train (readers of results never need them)."""
        from hpc_radr.birdnet.model_files import ModelFiles

        return ModelFiles(Path(self.record.model.model), Path(self.record.model.labels))

    @property
    def units(self) -> dict[str, UnitSpec]:
        return self.record.units

    @property
    def data_source(self) -> Path:
        return Path(self.record.data_source)

    def units_of(self, config: Configuration) -> tuple[str, str]:
        """The units a configuration trains and is tested on: its dataset's and the test set's, under its
        extraction settings."""
        return unit_name(config.dataset, config.extraction), unit_name(TEST_UNIT, config.extraction)

    def run(self, run_id: str) -> Configuration:
        for config in self.runs:
            if config.run_id == run_id:
                return config
        raise RunDirError(f"{self.run_dir.path}: no run '{run_id}' in the manifest")


def apply_overrides(sweep: Sweep, overrides: dict) -> Sweep:
    """Command-line changes to the training settings (e.g. fewer epochs for a demo), recorded in the manifest.
    A setting the grid sweeps cannot be overridden: the option would silently lose to each configuration's value."""
    if not overrides:
        return sweep
    swept = sorted(set(overrides) & set(sweep.axes))
    if swept:
        raise SweepError(f"--{swept[0].replace('_', '-')}: '{swept[0]}' is an axis of this sweep ([grid]); change "
                         "its list in the sweep file instead")
    return sweep.model_copy(update={"training": sweep.training.model_copy(update=overrides)})


def with_targets(manifest: Manifest, precision_targets: list[float] | None = None,
                 recall_targets: list[float] | None = None) -> Manifest:
    """The manifest read with other operating-point targets than its sweep file's (None or empty: the file's).
    Each result keeps its per-clip scores, so targets chosen after the sweep need no retraining; a bad target
    raises SweepError here, before any result is read."""
    changes = {name: list(values) for name, values in (("precision_targets", precision_targets),
                                                         ("recall_targets", recall_targets)) if values}
    if not changes:
        return manifest
    with_analysis(manifest.sweep, changes)  # raises on a bad target now, before any result is read
    return replace(manifest, analysis_overrides={**manifest.analysis_overrides, **changes})


def freeze(manifest: Manifest) -> Manifest:
    """Write a planned manifest into its (new) run directory; the point of no return of a submission."""
    run_dir = manifest.run_dir
    if not run_dir.manifest.exists():
        run_dir.path.mkdir(parents=True, exist_ok=True)
        sweep_text = manifest.record.sweep_text.encode("utf-8")
        write_atomic(run_dir.path / "sweep.toml", lambda handle: handle.write(sweep_text))  # whole on a full disk
        write_json(run_dir.manifest, manifest.record.as_json())
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
    if not isinstance(raw, dict) or raw.get("schema") != MANIFEST_SCHEMA:
        found = raw.get("schema") if isinstance(raw, dict) else None
        raise RunDirError(f"{run_dir.manifest}: manifest schema {found} is not {MANIFEST_SCHEMA}")
    try:
        return Manifest(ManifestRecord.model_validate(raw), run_dir)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:3])
        raise RunDirError(f"{run_dir.manifest}: not a whole manifest ({problems})") from None
