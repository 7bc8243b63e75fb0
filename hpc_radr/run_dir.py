"""The layout of one run directory: where every file of a submission lives. Light on purpose: every reader of
a result or a status imports it.

Layout::

    manifest.json      configurations, runs, data and model fingerprints, settings (written once, at submit)
    sweep.toml         the sweep file exactly as submitted
    submissions.jsonl  every Slurm job submitted into it, with the runs of each task
    clips/             the clip store: every clip's embeddings, extracted once (index.json, shards)
    cache/             one embedding cache per unit, assembled from the clip store
    results/<run>.json one whole result per finished run (atomic)
    failures/<run>.json the error of the last failed attempt of a run
    models/<run>.tflite trained classifier heads
    logs/<run>.log     BirdNET's output per run; submitit/ holds the executors' own files
    results.csv, results.parquet, summary.csv, report/   written by `hpc-radr collect`
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpc_radr.errors import HpcRadrError


class RunDirError(HpcRadrError, ValueError):
    """A run directory that is missing, foreign or inconsistent."""


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    path: Path

    # Files and folders of the whole run directory; per-run files below.
    manifest = property(lambda self: self.path / "manifest.json", doc="manifest.json")
    clips = property(lambda self: self.path / "clips", doc="clips/: the clip store, each clip's embeddings once")
    clip_index = property(lambda self: self.clips / "index.json",
                          doc="clips/index.json: the clips the store holds whole (written by clip_store)")
    cache = property(lambda self: self.path / "cache", doc="cache/: one embedding cache per unit")
    submitit = property(lambda self: self.path / "submitit", doc="submitit/: the executors' own files")
    estimate = property(lambda self: self.path / "estimate.json",
                        doc="estimate.json: what `submit --estimate` said the work would cost")

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
