"""Planning a submission: validate the sweep, the data and the model, and build the manifest to freeze.

The heavy part of a submission before anything is written: it reads every data file (a sha256 of its bytes, the
key of its embeddings in the clip store) and hashes the model. Nothing here writes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hpc_radr import __version__
from hpc_radr.birdnet.model_files import default_model, resolve_model
from hpc_radr.datasets import content_fingerprint, inspect
from hpc_radr.embedding_cache import cache_key, extraction_settings
from hpc_radr.manifest import (
    MANIFEST_SCHEMA,
    Manifest,
    ManifestRecord,
    ModelSpec,
    UnitSpec,
    apply_overrides,
    load,
    unit_name,
)
from hpc_radr.run_dir import RunDir, RunDirError
from hpc_radr.sweep import Sweep, expand, load_sweep, parse_sweep, training_for


def plan_manifest(sweep_path: Path, data: Path | None, model: Path | None, dedupe: bool,
                  overrides: dict) -> tuple[ManifestRecord, Sweep]:
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
    configurations = expand(sweep, dedupe)
    # one unit per dataset (and the test set) per extraction setting the configurations use
    variants = {c.extraction: extraction_settings(training_for(sweep, c)) for c in configurations}
    units, content = {}, {}
    for unit in inventory.units(sweep):
        fingerprint = unit.fingerprint
        for variant, extraction in variants.items():
            units[unit_name(unit.name, variant)] = UnitSpec(
                key=cache_key(fingerprint, model_fingerprint, extraction), data_fingerprint=fingerprint,
                positives=[str(p) for p in unit.positives], negatives=[str(p) for p in unit.negatives],
                extraction=extraction if variant else None)
        for path in (*unit.positives, *unit.negatives):
            if str(path) not in content:
                content[str(path)] = content_fingerprint(path)
    record = ManifestRecord(
        schema=MANIFEST_SCHEMA,
        hpc_radr_version=__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        sweep_file=str(sweep_path.resolve()),
        sweep_text=text,
        overrides=overrides,
        dedupe=dedupe,
        data_source=str(inventory.root),
        model=ModelSpec(model=str(model_files.model), labels=str(model_files.labels), sha256=model_fingerprint),
        units=units,
        clip_content=content,
        configurations=configurations,
    )
    return record, sweep


def existing(run_dir: RunDir, record: ManifestRecord) -> Manifest | None:
    """The run directory's manifest if it froze this same submission; None if there is none yet."""
    if not run_dir.manifest.exists():
        return None
    found = load(run_dir)
    same = (found.record.configurations == record.configurations
            and found.record.units == record.units
            and found.sweep.training == apply_overrides(parse_sweep(record.sweep_text, "sweep"),
                                                        record.overrides).training)
    if not same:
        raise RunDirError(
            f"{run_dir.path}: already holds a different submission (sweep, data or settings differ); "
            "choose another --run-dir, or use `hpc-radr resubmit` to finish the frozen one")
    return found
