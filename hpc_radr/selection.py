"""Which classifier to export from a merged table (``collect.merge``), decided on validation metrics only.

A *configuration* here is a grid point (dataset, upsampling mode and ratio, focal loss, the sweep's training
axes) with all its seeds. The
chosen one has the highest validation AUPRC (``val_auprc``: BirdNET's validation AUPRC at the best epoch, the
epoch whose weights it keeps) averaged over its seeds. Only configurations whose every seed completed compete:
one lucky seed of an unfinished configuration must not beat three finished ones. Ties (the ratio-0.0 rows of every
mode are one experiment, so they always tie) go to the configuration listed first in the sweep (lowest index).

Of its seeds, the run exported is the median by validation AUPRC (of two middle ones, the higher; equal values:
the lower seed). Not the best seed: picking the configuration on validation already favours lucky runs, and the
median is the run a rerun would most likely resemble. Test metrics are not read here at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from hpc_radr.collect import grid_columns
from hpc_radr.errors import HpcRadrError

METRIC = "val_auprc"
RULE = ("highest validation AUPRC (best epoch) averaged over seeds, among configurations whose every seed "
        "completed; ties go to the configuration listed first in the sweep (lowest index)")
SEED_RULE = "the median seed by validation AUPRC (of two middle ones, the higher; equal values: the lower seed)"


class SelectionError(HpcRadrError, ValueError):
    """Nothing can be chosen: no completed runs, an unknown index, or a configuration without a result."""


@dataclass(frozen=True)
class Choice:
    """The configuration chosen, its completed seed rows (index order) and the one row whose run is exported."""

    setting: dict
    seeds: pd.DataFrame
    exported: pd.Series
    by_hand: bool
    ranking: list[dict]  # every configuration that competes on validation, best first (also when chosen by hand)
    left_out: list[dict]  # configurations that could not compete, and why
    same_runs_as: list[dict]  # other configurations trained by exactly the same runs (ratio 0.0 in other modes)


def _settings(table: pd.DataFrame) -> list[tuple[dict, pd.DataFrame]]:
    """Each configuration with its rows, in the order the sweep lists them."""
    columns = grid_columns(table)
    groups = table.sort_values("index").groupby(columns, sort=False)
    return [(dict(zip(columns, key, strict=True)), rows) for key, rows in groups]


def _plain(setting: dict) -> dict:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in setting.items()}


def _median_seed(done: pd.DataFrame) -> pd.Series:
    ordered = done.assign(_key=-done[METRIC]).sort_values(["_key", "seed"], na_position="last")
    return ordered.drop(columns="_key").iloc[(len(ordered) - 1) // 2]


def choose(table: pd.DataFrame, index: int | None = None) -> Choice:
    """The configuration to export: by validation AUPRC, or the one of configuration ``index`` (then that very
    run is exported, whatever its seed)."""
    if table.empty or "state" not in table or not (table["state"] == "completed").any():
        raise SelectionError("no completed runs yet; nothing to export (see `hpc-radr status`)")
    settings = _settings(table)
    ranking, left_out = _rank(settings)
    if index is not None:
        return _by_hand(table, settings, index, ranking, left_out)
    if not ranking:
        raise SelectionError(f"no configuration has all its seeds completed ({len(left_out)} incomplete); "
                             "finish the sweep (`hpc-radr resubmit`) or choose one with --config INDEX")
    best = ranking[0]
    setting, rows = next((s, r) for s, r in settings if int(r["index"].iloc[0]) == best["first_index"])
    return _choice(setting, rows, settings, None, ranking, left_out)


def _rank(settings: list[tuple[dict, pd.DataFrame]]) -> tuple[list[dict], list[dict]]:
    """The configurations that compete, best first, and those that cannot, with the reason."""
    ranking, left_out = [], []
    for setting, rows in settings:
        done = rows[rows["state"] == "completed"]
        entry = {**_plain(setting), "first_index": int(rows["index"].iloc[0]), "seeds_completed": len(done),
                 "seeds_planned": len(rows)}
        if len(done) < len(rows):
            left_out.append({**entry, "reason": f"{len(done)} of {len(rows)} seeds completed"})
            continue
        mean = float(done[METRIC].mean())
        if math.isnan(mean):
            left_out.append({**entry, "reason": "validation AUPRC undefined"})
            continue
        ranking.append({**entry, "mean_val_auprc": mean})
    ranking.sort(key=lambda e: (-e["mean_val_auprc"], e["first_index"]))
    return ranking, left_out


def _by_hand(table: pd.DataFrame, settings: list[tuple[dict, pd.DataFrame]], index: int, ranking: list[dict],
             left_out: list[dict]) -> Choice:
    found = table[table["index"] == index]
    if found.empty:
        raise SelectionError(f"no configuration {index}: this run directory has 0 to {int(table['index'].max())} "
                             "(`hpc-radr plan` or results.csv lists them)")
    row = found.iloc[0]
    if row["state"] != "completed":
        raise SelectionError(f"configuration {index} (run {row['run_id']}) has no completed run "
                             f"(state: {row['state']}); choose another or rerun it with `hpc-radr resubmit`")
    setting, rows = next((s, r) for s, r in settings if index in set(r["index"]))
    return _choice(setting, rows, settings, row, ranking, left_out)


def _choice(setting: dict, rows: pd.DataFrame, settings: list[tuple[dict, pd.DataFrame]],
            exported: pd.Series | None, ranking: list[dict], left_out: list[dict]) -> Choice:
    done = rows[rows["state"] == "completed"]
    runs = set(rows["run_id"])
    twins = [{**_plain(other), "first_index": int(other_rows["index"].iloc[0])} for other, other_rows in settings
             if other != setting and set(other_rows["run_id"]) == runs]
    return Choice(setting=_plain(setting), seeds=done, exported=_median_seed(done) if exported is None else exported,
                  by_hand=exported is not None, ranking=ranking, left_out=left_out, same_runs_as=twins)
