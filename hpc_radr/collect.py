"""Merging the per-run JSON results into one table per configuration, and a summary over seeds."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hpc_radr.atomic import write_atomic
from hpc_radr.manifest import Manifest, load
from hpc_radr.operating_points import columns, operating_points
from hpc_radr.results import TEST_METRICS, RunScores, read_result, run_scores, run_states, unused_gpu
from hpc_radr.run_dir import RunDir
from hpc_radr.sweep import TRAINING_AXES, AnalysisSettings

GRID_COLUMNS = ["dataset", "upsampling_mode", "upsampling_ratio", "focal_loss"]
SUMMARY_METRICS = ["auprc", "auroc", "precision", "recall", "f1", "precision_opt", "recall_opt", "f1_opt"]


def grid_columns(table: pd.DataFrame) -> list[str]:
    """The columns that name a configuration, seeds aside: GRID_COLUMNS and the sweep's training axes (a merged
    table carries each axis as a column of that setting's name; no metric column has such a name)."""
    return GRID_COLUMNS + [name for name in TRAINING_AXES if name in table.columns]


@dataclass
class Collected:
    table: pd.DataFrame
    summary: pd.DataFrame
    missing: list[int]
    failed: list[int]
    problems: list[str]
    files: list[str]


def _row(record: dict, analysis: AnalysisSettings) -> dict:
    counts = record["sample_counts"]
    environment = record.get("environment", {})
    gpus = record.get("gpus") or {}
    return {
        **{metric: record["test"][metric] for metric in TEST_METRICS},
        "val_auprc": record["validation_at_best_epoch"]["auprc"],
        "val_auroc": record["validation_at_best_epoch"]["auroc"],
        "val_loss": record["validation_at_best_epoch"]["loss"],
        "epochs_run": record["epochs_run"],
        "best_epoch": record["best_epoch"],
        "n_train_positive": counts["dataset"]["positive"],
        "n_train_negative": counts["dataset"]["negative"],
        "n_fit_positive": counts["fit_before_upsampling"]["positive"],
        "n_fit_positive_upsampled": counts["fit_after_upsampling"]["positive"],
        "n_fit_negative": counts["fit_before_upsampling"]["negative"],
        "n_test_positive": record["test"]["n_positive"],
        "n_test_negative": record["test"]["n_negative"],
        "evaluation_protocol": record["evaluation_protocol"],
        "fit_seconds": record["timings"]["fit_s"],
        "upsample_seconds": record["timings"].get("upsample_s"),  # part of fit_seconds; None: not recorded
        # results from before the setting existed were all upsampled by BirdNET's own function
        "upsampling_implementation": record.get("upsampling", {}).get("implementation", "birdnet"),
        "host": environment.get("host"),
        "slurm_job_id": environment.get("slurm", {}).get("SLURM_JOB_ID"),
        "gpu_granted": gpus.get("SLURM_JOB_GPUS"),  # what Slurm gave the task (None: no GPU asked for)
        "trained_on": "GPU:0" if gpus.get("tensorflow") else "CPU",
        "unused_gpu": unused_gpu(record),  # given a GPU, trained on the CPU
        "versions": json.dumps(record.get("versions", {}), sort_keys=True),  # the software that trained it
        **_operating_points(record, analysis),
    }


def operating_point_columns(analysis: AnalysisSettings) -> list[str]:
    """The columns computed from per-clip scores, in the order rows carry them."""
    return ["scores_kept", "validation_scores_from", *columns(analysis.precision_targets, analysis.recall_targets)]


def _operating_points(record: dict, analysis: AnalysisSettings) -> dict:
    """Operating-point metrics from the run's per-clip scores; NaN (marked scores_kept False) for a result
    written before scores were kept, so older run directories still collect."""
    scores = run_scores(record)
    if scores is None:
        return {column: math.nan for column in operating_point_columns(analysis)} | {
            "scores_kept": False, "validation_scores_from": None}
    return {"scores_kept": True, "validation_scores_from": scores.validation_source,
            **operating_points(scores, analysis.precision_targets, analysis.recall_targets)}


def merge(manifest: Manifest) -> tuple[pd.DataFrame, list[str]]:
    """One row per configuration (duplicates share their run's metrics); state says which rows have metrics."""
    metrics: dict[str, dict] = {}

    analysis = manifest.sweep.analysis

    def keep(run_id: str, record: dict) -> None:
        metrics[run_id] = _row(record, analysis)

    states, problems = run_states(manifest.run_dir, (c.run_id for c in manifest.runs), keep)  # each file once
    rows = []
    for config in manifest.configurations:
        outcome = states[config.run_id]
        rows.append({**config.row(), "state": outcome.state.value, "error": outcome.error,
                     **metrics.get(config.run_id, {})})
    return pd.DataFrame(rows), problems


def kept_scores(manifest: Manifest, table: pd.DataFrame) -> dict[str, RunScores]:
    """run_id -> per-clip scores of the completed runs of a merged table that kept them (each file read once)."""
    done = table.loc[table["state"] == "completed", "run_id"].drop_duplicates() if len(table) else []
    found = {}
    for run_id in done:
        record = read_result(manifest.run_dir, run_id).record
        scores = run_scores(record) if record is not None else None
        if scores is not None:
            found[run_id] = scores
    return found


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and number of seeds per configuration, over completed runs."""
    done, columns = table[table["state"] == "completed"], grid_columns(table)
    if done.empty:
        return pd.DataFrame(columns=columns)
    grouped = done.groupby(columns, sort=False)[SUMMARY_METRICS]
    summary = grouped.agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    summary.insert(0, "n_seeds", grouped.size())
    return summary.reset_index()


def _write_frame(path: Path, frame: pd.DataFrame) -> None:
    if path.suffix == ".parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    else:
        data = frame.to_csv(index=False).encode()
    write_atomic(path, lambda handle: handle.write(data))


def collect(run_dir: Path, manifest: Manifest | None = None) -> Collected:
    """Write results.csv, results.parquet and summary.csv into the run directory."""
    run_dir = Path(run_dir)
    table, problems = merge(manifest or load(RunDir(run_dir)))
    summary = summarize(table)
    files = [run_dir / "results.csv", run_dir / "results.parquet", run_dir / "summary.csv"]
    _write_frame(files[0], table)
    _write_frame(files[1], table)
    _write_frame(files[2], summary)
    return Collected(
        table=table,
        summary=summary,
        missing=table.loc[table["state"] == "missing", "index"].tolist(),
        failed=table.loc[table["state"] == "failed", "index"].tolist(),
        problems=problems,
        files=[str(f) for f in files],
    )
