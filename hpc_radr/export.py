"""`export`: one trained classifier of a sweep as a folder BirdNET-Analyzer reads, with its model card.

Plain file work (no TensorFlow): the configuration and seed are chosen from the merged results
(``selection``), the run's ``models/<run>.tflite`` is copied beside its one-line labels file, and the card is
written as JSON and Markdown. Everything is written into a hidden folder renamed into place at the end, so
the export folder exists whole or not at all; an existing one is replaced only when asked (``force``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from hpc_radr import model_card
from hpc_radr.atomic import staged_folder, write_atomic, write_json
from hpc_radr.classifier import CARD_JSON, CARD_MARKDOWN, labels_file
from hpc_radr.collect import merge
from hpc_radr.errors import HpcRadrError
from hpc_radr.manifest import load
from hpc_radr.results import read_result
from hpc_radr.run_dir import RunDir
from hpc_radr.selection import choose

EXPORT_DIR = "export"


class ExportError(HpcRadrError, ValueError):
    """The export cannot be written as asked (target out of range, folder exists, model file gone)."""


@dataclass(frozen=True)
class Exported:
    folder: Path
    card: dict


def export(run_dir: RunDir, index: int | None = None, out: Path | None = None, precision_target: float = 0.9,
           force: bool = False) -> Exported:
    """Choose (or take configuration ``index``), then write the classifier folder; default
    ``RUN_DIR/export/<run id>``. Nothing is written when any check fails."""
    if not 0.0 < precision_target < 1.0:
        raise ExportError(f"--precision-target {precision_target:g}: must lie strictly between 0 and 1")
    run_dir = RunDir(run_dir.path.expanduser().absolute())  # the card names it; a relative path would mislead
    manifest = load(run_dir)
    table, _ = merge(manifest)  # files that are not whole results count as missing runs
    choice = choose(table, index)
    run_id = str(choice.exported["run_id"])
    folder = (out if out is not None else run_dir.path / EXPORT_DIR / run_id).expanduser().absolute()
    if folder.exists() and not force:
        raise ExportError(f"{folder} exists; pass --force to replace it, or --out another folder")
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} exists and is not a folder; --force replaces only an export folder")
    source = run_dir.model(run_id)
    if not source.is_file():
        raise ExportError(f"{source}: the classifier of run {run_id} is missing; retrain it with "
                          f"`hpc-radr resubmit {run_dir.path}` after removing its result")
    records = {}
    for seed_run in choice.seeds["run_id"]:
        record = read_result(run_dir, seed_run).record
        if record is None:  # replaced or removed since the table was merged a moment ago
            raise ExportError(f"{run_dir.result(seed_run)}: result changed while exporting; run export again")
        records[seed_run] = record
    model_name = f"{run_id}.tflite"
    labels_name = labels_file(Path(model_name)).name
    classifier = source.read_bytes()  # a head is a few KB; hashed and written from the same bytes
    files = {"file": model_name, "labels_file": labels_name, "sha256": hashlib.sha256(classifier).hexdigest()}
    card = model_card.build(manifest, choice, records, precision_target, files)
    positive = manifest.sweep.data.positive_class
    with staged_folder(folder, replace=force) as stage:
        write_atomic(stage / model_name, lambda handle: handle.write(classifier))
        write_atomic(stage / labels_name, lambda handle: handle.write(f"{positive}\n".encode()))
        write_json(stage / CARD_JSON, card)
        text = model_card.markdown(card).encode()
        write_atomic(stage / CARD_MARKDOWN, lambda handle: handle.write(text))
    return Exported(folder, card)
