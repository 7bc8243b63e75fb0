"""What the sweep says about the research question: paired effects of each remedy, rankings and warnings.

The unit of analysis is one training run per seed. At ratio 0.0 BirdNET never upsamples, so the rows of
every mode at 0.0 are one experiment: they are counted once, under the mode ``none``, never three times.
Every comparison pairs runs by seed (same seed, same validation split and initial weights), and gives the
mean difference with a 95 % t-interval over seeds; with fewer than two seeds no interval exists.

Every comparison also gets a paired bootstrap interval over test clips and seeds (``report.bootstrap``) and a
p-value adjusted over its family (``report.multiplicity``): remedies against the baseline, the family the
verdicts use; focal loss on vs off; dataset vs dataset (no verdicts, so families of their own).
The verdict separates a better detector (AUPRC, or recall at a fixed precision with the threshold chosen on
validation data, raised) from a moved threshold (recall at BirdNET's 0.5 raised, with neither of those).
Results without per-clip scores (written by an earlier version) fall back to a t-test over seeds for the
metrics they have; operating-point metrics are then missing.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import stdtr, stdtrit  # t distribution and quantile: scipy.stats costs 0.3 s more to import

from hpc_radr import operating_points as op
from hpc_radr.collect import GRID_COLUMNS, SUMMARY_METRICS, operating_point_columns, summarize
from hpc_radr.errors import HpcRadrError
from hpc_radr.estimate import estimate_against_actual
from hpc_radr.manifest import Manifest
from hpc_radr.report.bootstrap import Bootstrap
from hpc_radr.report.multiplicity import adjust
from hpc_radr.results import RunScores, unused_gpu_warning
from hpc_radr.sweep import AnalysisSettings

CONFIDENCE = 0.95
NO_UPSAMPLING = "none"
# best_epoch at or below this means early stopping kept (nearly) the initial weights.
DEGENERATE_BEST_EPOCH = 2
MAX_SEEDS_SHOWN = 1000  # "seeds needed" beyond this is shown as more than it


class ReportError(HpcRadrError, ValueError):
    """A sweep the report cannot analyse yet."""

VERDICTS = {
    "detects_better": "detects better (AUPRC or recall at the fixed precision raised)",
    "threshold_only": "raises recall at 0.5 only: no better detection shown (a moved threshold)",
    "detects_worse": "detects worse (AUPRC or recall at the fixed precision lowered)",
    "mixed": "mixed (one detection metric raised, another lowered)",
    "no_gain": "no clear effect",
    "undetermined": "undetermined (fewer than 2 paired seeds)",
    "not_applied": "not applied on this data (upsampling added no samples)",
}


def effect_metrics(settings: AnalysisSettings) -> list[str]:
    """The metrics compared: detection (AUPRC, operating points chosen on validation), then BirdNET's 0.5."""
    return ["auprc", *(f"recall_at_{op.precision_name(p)}" for p in settings.precision_targets),
            *(f"precision_at_{op.recall_name(r)}" for r in settings.recall_targets), "recall", "precision"]


def detection_metrics(settings: AnalysisSettings) -> list[str]:
    """What says a detector ranks calls better, whatever its threshold."""
    return effect_metrics(settings)[:-2]


def metric_name(metric: str) -> str:
    """``recall_at_p0.9`` -> ``recall at precision >= 0.9``, for tables and figures."""
    if metric.startswith("recall_at_p"):
        return f"recall at precision ≥ {metric.removeprefix('recall_at_p')}"
    if metric.startswith("precision_at_r"):
        return f"precision at recall ≥ {metric.removeprefix('precision_at_r')}"
    return {"auprc": "AUPRC", "recall": "recall at 0.5", "precision": "precision at 0.5"}.get(metric, metric)


@dataclass
class Analysis:
    """Everything the report shows, as tables a program can read too."""

    settings: AnalysisSettings
    summary: pd.DataFrame  # per configuration over seeds (collect's summary.csv)
    experiments: pd.DataFrame  # one row per independent run and seed
    ranking: pd.DataFrame
    effects: pd.DataFrame  # remedy vs baseline, long format: one row per setting and metric
    focal: pd.DataFrame  # focal loss on vs off per upsampling setting
    datasets: pd.DataFrame  # first dataset minus second for the same setting
    answer: list[dict]
    warnings: list[dict]
    provenance: dict
    seeds_configured: int
    dataset_order: list[str]
    resamples: int | None  # bootstrap resamples shared by every comparison; None: no run kept per-clip scores


def label(mode: str, ratio: float, focal: bool) -> str:
    """A remedy in words, e.g. ``smote x1 + focal loss``."""
    parts = [f"{mode} x{ratio:g}"] if ratio > 0 else []
    if focal:
        parts.append("focal loss")
    return " + ".join(parts) or "baseline (no upsampling, no focal loss)"


def _collapse_mode(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(upsampling_mode=frame["upsampling_mode"].where(frame["upsampling_ratio"] != 0.0,
                                                                       NO_UPSAMPLING))


def experiments(table: pd.DataFrame, rules: AnalysisSettings) -> pd.DataFrame:
    """Completed runs, one row per setting and seed (identical ratio-0.0 runs of a --literal sweep averaged).

    ``upsampled``: whether BirdNET's upsampling added samples to that run. It adds none when the positives of
    the training split already reach int(max(positives, negatives) x ratio); such a run trained exactly like
    one without upsampling."""
    metrics = [*SUMMARY_METRICS, *operating_point_columns(rules)[2:]]
    columns = GRID_COLUMNS + ["seed", "run_id", "state", *metrics, "n_fit_positive", "n_fit_positive_upsampled"]
    done = table.reindex(columns=columns)
    done = done[done["state"] == "completed"].drop_duplicates("run_id")
    done = done.assign(upsampled=done["n_fit_positive_upsampled"] > done["n_fit_positive"])
    grouped = _collapse_mode(done).groupby(GRID_COLUMNS + ["seed"], sort=False)
    # run_id: the first run of the setting and seed, whose per-clip scores the bootstrap resamples
    return (grouped[metrics].mean().join(grouped["upsampled"].any()).join(grouped["run_id"].first())
            .reset_index())


def settings(manifest: Manifest) -> pd.DataFrame:
    """Every setting the sweep asked for, in index order, whether or not it has results."""
    frame = pd.DataFrame([vars(c) for c in manifest.configurations])  # plain fields, without asdict's deep copy
    return _collapse_mode(frame)[GRID_COLUMNS].drop_duplicates().reset_index(drop=True)


def interval(diffs: np.ndarray) -> dict:
    """Mean paired difference with its t-interval; undefined (NaN) with fewer than two seeds."""
    diffs = diffs[~np.isnan(diffs)]
    n = len(diffs)
    if n == 0:
        return {"n": 0, "mean": math.nan, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                "note": "no seed has both runs"}
    mean = float(np.mean(diffs))
    if n < 2:
        return {"n": 1, "mean": mean, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                "note": "one seed: no interval"}
    sd = float(np.std(diffs, ddof=1))
    half = float(stdtrit(n - 1, 0.5 + CONFIDENCE / 2)) * sd / math.sqrt(n)
    note = "every seed moved by the same amount (sd 0)" if sd < 1e-12 else None
    return {"n": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half, "note": note}


def t_p_value(row: dict) -> float:
    """Two-sided p-value of the paired t-test over seeds (NaN below two seeds)."""
    if row["n"] < 2:
        return math.nan
    if row["sd"] < 1e-12:
        return 0.0 if abs(row["mean"]) > 1e-12 else 1.0
    t = abs(row["mean"]) / (row["sd"] / math.sqrt(row["n"]))
    return float(2 * stdtr(row["n"] - 1, -t))


def seeds_needed(sd: float, width: float) -> float:
    """Seeds for the 95 % t-interval of a paired difference with this spread to be at most ``width`` wide
    (NaN when the spread is unknown); more than MAX_SEEDS_SHOWN is returned as inf."""
    if math.isnan(sd):
        return math.nan
    for n in range(2, MAX_SEEDS_SHOWN + 1):
        if 2 * float(stdtrit(n - 1, 0.5 + CONFIDENCE / 2)) * sd / math.sqrt(n) <= width:
            return float(n)
    return math.inf


def _select(frame: pd.DataFrame, **values: object) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in values.items():
        mask &= (frame[column] == value).to_numpy()
    return frame[mask]


@dataclass
class _Resampling:
    """What the bootstrap needs: the runs' kept scores and the shared resamples (None: no run kept scores)."""

    scores: dict[str, RunScores]
    bootstrap: Bootstrap | None

    def paired(self, left: pd.DataFrame, right: pd.DataFrame, metric: str) -> dict:
        pairs = left.merge(right, on="seed", suffixes=("", "_ref")).sort_values("seed")
        runs = list(zip(pairs["run_id"], pairs["run_id_ref"], strict=True))
        if self.bootstrap is None or not runs or any(a not in self.scores or b not in self.scores for a, b in runs):
            return {"boot_low": math.nan, "boot_high": math.nan, "p_value": math.nan,
                    "p_source": "no per-clip scores"}
        return self.bootstrap.paired([(a, self.scores[a]) for a, _ in runs],
                                     [(b, self.scores[b]) for _, b in runs], metric)


def _paired_rows(key: dict, left: pd.DataFrame, right: pd.DataFrame, metrics: list[str],
                 resampling: _Resampling | None, width: float) -> list[dict]:
    """left minus right, paired by seed, one row per metric: the mean with its t-interval over seeds, the seeds a
    t-interval ``width`` wide would need at that spread, and the paired bootstrap interval and p-value (a t-test's
    where the runs kept no scores). ``resampling`` None: no test, the comparison is no experiment (upsampling
    that added no sample)."""
    pairs = left.merge(right, on="seed", suffixes=("", "_ref"))
    seeds = sorted(int(s) for s in pairs["seed"])
    rows = []
    for metric in metrics:
        row = {**key, "metric": metric, "seeds": seeds,
               **interval((pairs[metric] - pairs[f"{metric}_ref"]).to_numpy(dtype=float))}
        if resampling is None:
            row["p_source"] = "not applied"
        else:
            row |= resampling.paired(left, right, metric)
            if math.isnan(row["p_value"]) and not math.isnan(row["mean"]):
                row |= {"p_value": t_p_value(row), "p_source": "t-test over seeds"}  # no scores to resample
        row["seeds_needed"] = seeds_needed(row["sd"], width)
        rows.append(row)
    return rows


def _is_baseline(ratio: float, focal: bool) -> bool:
    return ratio == 0.0 and not focal


def _is_baseline_in(grid: pd.DataFrame, dataset: str) -> bool:
    return not _select(grid, dataset=dataset, upsampling_ratio=0.0, focal_loss=False).empty


def _verdict(by_metric: pd.DataFrame, detection: list[str]) -> str:
    """From the comparisons significant after adjustment: a better or worse detector, or only a moved threshold."""
    judged = by_metric.loc[detection]
    if judged["p_adjusted"].isna().all():
        return "undetermined"
    up = (judged["significant"] & (judged["mean"] > 0)).any()
    down = (judged["significant"] & (judged["mean"] < 0)).any()
    if up and down:
        return "mixed"
    if up or down:
        return "detects_better" if up else "detects_worse"
    recall = by_metric.loc["recall"]
    return "threshold_only" if recall["significant"] and recall["mean"] > 0 else "no_gain"


EFFECT_COLUMNS = ["metric", "seeds", "n", "mean", "sd", "ci_low", "ci_high", "note"]
TESTED_COLUMNS = ["boot_low", "boot_high", "p_value", "p_source", "p_adjusted", "significant", "seeds_needed"]


def _tested_frame(rows: list[dict], keys: list[str], rules: AnalysisSettings) -> pd.DataFrame:
    """The rows of one family of comparisons, with p-values adjusted over that family."""
    frame = pd.DataFrame(rows, columns=[*keys, *EFFECT_COLUMNS, *TESTED_COLUMNS])
    frame["p_adjusted"] = adjust(frame["p_value"].to_numpy(dtype=float), rules.correction)
    frame["significant"] = frame["p_adjusted"] <= rules.alpha
    return frame


def effects_vs_baseline(exp: pd.DataFrame, grid: pd.DataFrame, rules: AnalysisSettings,
                        resampling: _Resampling) -> pd.DataFrame:
    """Each remedy minus the baseline (ratio 0.0, focal off) of the same dataset, paired by seed: t-interval
    over seeds, bootstrap interval over clips and seeds, p-value adjusted over all of them, verdict."""
    keys = GRID_COLUMNS + ["remedy"]
    metrics = effect_metrics(rules)
    inert = set(_inert_settings(exp))
    rows: list[dict] = []
    for s in grid.itertuples(index=False):
        if _is_baseline(s.upsampling_ratio, s.focal_loss) or not _is_baseline_in(grid, s.dataset):
            continue
        left = _select(exp, dataset=s.dataset, upsampling_mode=s.upsampling_mode,
                       upsampling_ratio=s.upsampling_ratio, focal_loss=s.focal_loss)
        right = _select(exp, dataset=s.dataset, upsampling_ratio=0.0, focal_loss=False)
        tested = not (tuple(s) in inert and not s.focal_loss)  # upsampling alone that added nothing: no experiment
        rows += _paired_rows({**s._asdict(), "remedy": label(s.upsampling_mode, s.upsampling_ratio, s.focal_loss)},
                             left, right, metrics, resampling if tested else None, rules.interval_width)
    frame = _tested_frame(rows, keys, rules)
    verdicts = {}
    for (dataset, remedy), group in frame.groupby(["dataset", "remedy"], sort=False):
        by_metric = group.set_index("metric")
        if (by_metric["p_source"] == "not applied").all():
            verdicts[(dataset, remedy)] = "not_applied"
        else:
            verdicts[(dataset, remedy)] = _verdict(by_metric, detection_metrics(rules))
    frame["verdict"] = [verdicts[(d, r)] for d, r in zip(frame["dataset"], frame["remedy"], strict=True)]
    return frame


def _inert_settings(exp: pd.DataFrame) -> list[tuple]:
    """(dataset, mode, ratio, focal) of the upsampling settings that added no sample in any of their runs."""
    upsampling = exp[exp["upsampling_ratio"] > 0]
    if upsampling.empty:
        return []
    applied = upsampling.groupby(GRID_COLUMNS, sort=False)["upsampled"].any()
    return [setting for setting, used in applied.items() if not used]


def _focal_settings(grid: pd.DataFrame) -> list[tuple]:
    """(dataset, mode, ratio) of the upsampling settings swept with focal loss both on and off."""
    return [setting for setting, group in grid.groupby(["dataset", "upsampling_mode", "upsampling_ratio"], sort=False)
            if set(group["focal_loss"]) == {True, False}]


def focal_effects(exp: pd.DataFrame, grid: pd.DataFrame, rules: AnalysisSettings,
                  resampling: _Resampling) -> pd.DataFrame:
    """Focal loss on minus off for every dataset and upsampling setting, paired by seed, tested like the remedies
    but as a family of its own (these comparisons make no verdict)."""
    keys = ["dataset", "upsampling_mode", "upsampling_ratio", "upsampling"]
    rows: list[dict] = []
    for dataset, mode, ratio in _focal_settings(grid):
        where = {"dataset": dataset, "upsampling_mode": mode, "upsampling_ratio": ratio}
        rows += _paired_rows({**where, "upsampling": label(mode, ratio, False) if ratio > 0 else "no upsampling"},
                             _select(exp, **where, focal_loss=True), _select(exp, **where, focal_loss=False),
                             effect_metrics(rules), resampling, rules.interval_width)
    return _tested_frame(rows, keys, rules)


def dataset_differences(exp: pd.DataFrame, grid: pd.DataFrame, datasets: list[str], rules: AnalysisSettings,
                        resampling: _Resampling) -> pd.DataFrame:
    """The same setting on two datasets (earlier minus later in the sweep file), paired by seed and scored on the
    same test clips, tested as a family of its own."""
    keys = ["dataset_a", "dataset_b", "upsampling_mode", "upsampling_ratio", "focal_loss", "setting"]
    rows: list[dict] = []
    for a, b in itertools.combinations(datasets, 2):
        for s in grid[grid["dataset"] == a].itertuples(index=False):
            where = {"upsampling_mode": s.upsampling_mode, "upsampling_ratio": s.upsampling_ratio,
                     "focal_loss": s.focal_loss}
            rows += _paired_rows({"dataset_a": a, "dataset_b": b, **where,
                                  "setting": label(s.upsampling_mode, s.upsampling_ratio, s.focal_loss)},
                                 _select(exp, dataset=a, **where), _select(exp, dataset=b, **where),
                                 effect_metrics(rules), resampling, rules.interval_width)
    return _tested_frame(rows, keys, rules)


def ranking(exp: pd.DataFrame, datasets: list[str], rules: AnalysisSettings) -> pd.DataFrame:
    """Settings per dataset by mean AUPRC over seeds (recall, then precision, break ties)."""
    metrics = ["auprc", "recall", "precision", effect_metrics(rules)[1]]
    grouped = exp.groupby(GRID_COLUMNS, sort=False)[metrics]
    frame = grouped.agg(["mean", "std"])
    frame.columns = [f"{metric}_{stat}" for metric, stat in frame.columns]
    frame.insert(0, "n_seeds", grouped.size())
    frame = frame.reset_index()
    frame.insert(1, "setting", [label(m, r, f) for m, r, f in
                                zip(frame["upsampling_mode"], frame["upsampling_ratio"], frame["focal_loss"],
                                    strict=True)])
    ordered = []
    for dataset in datasets:
        part = frame[frame["dataset"] == dataset].sort_values(
            ["auprc_mean", "recall_mean", "precision_mean"], ascending=False, kind="stable")
        ordered.append(part.assign(rank=range(1, len(part) + 1)))
    return pd.concat(ordered, ignore_index=True)


def _ci_dict(row: pd.Series) -> dict:
    return {"mean": row["mean"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "n": int(row["n"]),
            "boot_low": row["boot_low"], "boot_high": row["boot_high"], "p_value": row["p_value"],
            "p_adjusted": row["p_adjusted"], "significant": bool(row["significant"]),
            "seeds_needed": row["seeds_needed"]}


def answer(effects: pd.DataFrame, exp: pd.DataFrame, datasets: list[str], rules: AnalysisSettings) -> list[dict]:
    """Per dataset: the remedies by verdict, each with every compared metric (best gain in the first precision
    target's recall first)."""
    metrics = effect_metrics(rules)
    result = []
    for dataset in datasets:
        base = _select(exp, dataset=dataset, upsampling_ratio=0.0, focal_loss=False)
        entry: dict = {"dataset": dataset, "baseline": {m: float(base[m].mean()) if len(base) else math.nan
                                                        for m in metrics} | {"n": len(base)},
                       **{verdict: [] for verdict in VERDICTS}}
        part = effects[effects["dataset"] == dataset]
        for remedy, group in part.groupby("remedy", sort=False):
            by_metric = group.set_index("metric")
            entry[by_metric["verdict"].iloc[0]].append(
                {"remedy": remedy, **{m: _ci_dict(by_metric.loc[m]) for m in metrics}})
        for verdict in VERDICTS:
            entry[verdict].sort(key=lambda e: (np.nan_to_num(-e[metrics[1]]["mean"]),
                                               np.nan_to_num(-e["auprc"]["mean"])))
        entry["n_remedies"] = int(part["remedy"].nunique())
        result.append(entry)
    return result


def _indices(table: pd.DataFrame, mask: pd.Series) -> list[int]:
    return [int(i) for i in table.loc[mask, "index"]]


def warnings(manifest: Manifest, table: pd.DataFrame, problems: list[str], comparisons: dict[str, pd.DataFrame],
             provenance: dict) -> list[dict]:
    """Everything that limits what the numbers mean, each with the configuration indices concerned."""
    found: list[dict] = []

    def warn(kind: str, message: str, indices: list[int] | None = None) -> None:
        found.append({"kind": kind, "message": message, "indices": indices or []})

    for state in ("failed", "missing"):
        mask = table["state"] == state
        if mask.any():
            warn(state, f"{int(mask.sum())} configuration(s) {state}; their rows are left out of every mean "
                        f"and effect", _indices(table, mask))
    for problem in problems:
        warn("skipped_file", problem)
    done = table[table["state"] == "completed"]
    if not done.empty:
        rows_of = done.groupby("run_id", sort=False)["index"].agg(list)  # a run's rows (ratio-0.0 twins)
        for kind, run_id, message in _run_warnings(done, manifest.sweep.training.epochs):
            warn(kind, message, [int(i) for i in rows_of[run_id]])
        if "scores_kept" in done and not done["scores_kept"].astype(bool).all():
            older = done[~done["scores_kept"].astype(bool)]
            warn("scores_missing", f"{older['run_id'].nunique()} run(s) have no per-clip scores (written by an "
                                   "earlier version): their operating points and bootstrap intervals are missing, "
                                   "and their comparisons use the t-test over seeds; a new submission with this "
                                   "version keeps them", [int(i) for i in older["index"]])
        if "unused_gpu" in done:  # tables merged before devices were recorded have no such column
            on_cpu = done[done["unused_gpu"].eq(True)]
            if len(on_cpu):
                warn("unused_gpu", unused_gpu_warning(list(dict.fromkeys(on_cpu["run_id"]))),
                     [int(i) for i in on_cpu["index"]])
    seeds = len(manifest.sweep.grid.seeds)
    for name, frame in comparisons.items():
        short = frame[(frame["metric"] == "recall") & (frame["n"] < seeds)]
        if len(short):
            described = "; ".join(_describe_comparison(row) + f" ({int(row['n'])} seed(s))"
                                  for _, row in short.iterrows())
            warn("few_seeds", f"{name}: {len(short)} comparison(s) rest on fewer than the {seeds} configured "
                              f"seeds (with fewer than 2 no interval exists): {described}")
    grid = manifest.sweep.grid
    if 0.0 in grid.upsampling_ratios and len(grid.upsampling_modes) > 1:
        zero = _indices(table, table["upsampling_ratio"] == 0.0)
        if manifest.record.dedupe:
            warn("shared_runs", f"ratio 0.0 rows of modes {', '.join(grid.upsampling_modes)} are one run per "
                                "dataset, focal setting and seed (BirdNET never upsamples at 0.0): the tables "
                                "repeat them, the analysis counts each run once (mode 'none')", zero)
        else:
            warn("shared_runs", "ratio 0.0 rows of every mode were trained separately (--literal) but are the "
                                "same experiment; the analysis averages them into one (mode 'none')", zero)
    exp = experiments(table, manifest.sweep.analysis)
    inert = _inert_settings(exp)
    if inert:
        described = "; ".join(f"{d} {label(m, r, f)}" for d, m, r, f in inert)
        rows = table["upsampling_ratio"].gt(0) & pd.Series(
            [(d, m, r, f) in set(inert) for d, m, r, f in zip(table["dataset"], table["upsampling_mode"],
                                                             table["upsampling_ratio"], table["focal_loss"],
                                                             strict=True)], index=table.index)
        warn("not_applied", f"upsampling added no samples in {len(inert)} setting(s), in every seed: {described}. "
                            "The positives of the training split already reached int(max(positives, negatives) x "
                            "ratio), so these runs trained as without upsampling; their upsampling is reported as "
                            "not applied, not as an effect of zero (with focal loss they measure focal loss alone)",
             _indices(table, rows))
    if not (0.0 in grid.upsampling_ratios and False in grid.focal_loss):
        warn("no_baseline", "the grid has no baseline (ratio 0.0 with focal loss off): no effects against it")
    if "birdnet" in provenance["evaluation_protocols"]:
        warn("optimistic_protocol", "some runs used BirdNET's own evaluation protocol, which early-stops and "
                                    "picks its threshold on the test set: their test metrics are optimistic")
    if len(provenance["versions"]) > 1:
        warn("mixed_versions", "results come from different software versions: "
                               + "; ".join(json.dumps(v, sort_keys=True) for v in provenance["versions"]))
    return found


def _run_warnings(done: pd.DataFrame, epochs: int) -> list[tuple[str, str, str]]:
    """(kind, run_id, message) for runs whose metrics say little: degenerate early stops, chance-level AUPRC."""
    runs = done.drop_duplicates("run_id").set_index("run_id")
    found = []
    for run_id, run in runs[runs["best_epoch"] <= DEGENERATE_BEST_EPOCH].iterrows():
        found.append(("degenerate", run_id, f"{run_id}: best epoch {int(run['best_epoch'])}, stopped after "
                      f"{int(run['epochs_run'])} of {epochs} epochs: early stopping kept (nearly) the initial "
                      "weights, so this run says little about its remedy (it is still counted)"))
    prevalence = runs["n_test_positive"] / (runs["n_test_positive"] + runs["n_test_negative"])
    for run_id, run in runs[runs["auprc"] <= prevalence].iterrows():
        found.append(("chance_level", run_id, f"{run_id}: test AUPRC {run['auprc']:.3f} is at or below the test "
                      f"prevalence {prevalence[run_id]:.3f}: no better than guessing"))
    return found


def _describe_comparison(row: pd.Series) -> str:
    if "remedy" in row:
        return f"{row['dataset']} {row['remedy']}"
    if "upsampling" in row:
        return f"{row['dataset']} {row['upsampling']}, focal on vs off"
    return f"{row['setting']}, {row['dataset_a']} vs {row['dataset_b']}"


def provenance(manifest: Manifest, table: pd.DataFrame) -> dict:
    """How the results were produced: software versions from the result files and the frozen settings."""
    done = table[table["state"] == "completed"]
    found = done["versions"].dropna().unique() if "versions" in done else []
    versions = [json.loads(text) for text in found]  # collect keeps them as JSON text, one per row
    protocols = sorted(set(table["evaluation_protocol"].dropna())) if "evaluation_protocol" in table else []
    return {
        "run_dir": str(manifest.run_dir.path),
        "sweep_name": manifest.sweep.name,
        "created_at": manifest.record.created_at,
        "data_source": manifest.record.data_source,
        "model_sha256": manifest.record.model.sha256,
        "sweep_text": manifest.record.sweep_text,
        "overrides": manifest.record.overrides,
        "analysis": manifest.sweep.analysis.model_dump(),
        "analysis_overrides": manifest.analysis_overrides,  # given after the sweep (report --precision-target)
        "epochs": manifest.sweep.training.epochs,
        "evaluation": manifest.sweep.training.evaluation,
        "evaluation_protocols": protocols,
        "versions": versions,
        "configurations": len(manifest.configurations),
        "runs": len(manifest.runs),
        "completed_configurations": int((table["state"] == "completed").sum()),
        "cost": estimate_against_actual(manifest),
    }


def planned_comparisons(grid: pd.DataFrame, datasets: list[str]) -> dict[str, int]:
    """Settings compared in each family (times the metrics: its comparisons), whether or not they have results."""
    remedies = sum(not _is_baseline(s.upsampling_ratio, s.focal_loss) and _is_baseline_in(grid, s.dataset)
                   for s in grid.itertuples(index=False))
    between = sum(int((grid["dataset"] == a).sum()) for a, _ in itertools.combinations(datasets, 2))
    return {"remedy vs baseline": remedies, "focal loss on vs off": len(_focal_settings(grid)),
            "dataset vs dataset": between}


def resamples_for(rules: AnalysisSettings, family: int) -> int:
    """The sweep's count, else enough that 2 / (B + 1) is below alpha / (2 x family): a comparison every resample
    agrees on can pass Holm's strictest level, alpha / family."""
    return rules.bootstrap_resamples or max(2000, math.ceil(4 * family / rules.alpha))


def resampling(scores: dict[str, RunScores], rules: AnalysisSettings, seeds: int, family: int,
               ) -> tuple[_Resampling, list[str]]:
    """The shared bootstrap over the runs' kept scores, and the runs left out of it because they scored other
    test clips than the first run did (the same resamples need the same clips)."""
    if not scores:
        return _Resampling({}, None), []
    reference = next(iter(scores.values()))
    same = {run_id: found for run_id, found in scores.items()
            if np.array_equal(found.test_positive, reference.test_positive)}
    boot = Bootstrap(len(reference.test), resamples_for(rules, family), rules.bootstrap_seed, seeds,
                     list(rules.precision_targets), list(rules.recall_targets))
    return _Resampling(same, boot), sorted(set(scores) - set(same))


def analyse(manifest: Manifest, table: pd.DataFrame, problems: list[str],
            scores: dict[str, RunScores] | None = None) -> Analysis:
    """The whole analysis of a merged table (``hpc_radr.collect.merge``) and the runs' kept per-clip scores
    (``hpc_radr.collect.kept_scores``; without them there are no bootstrap intervals)."""
    if manifest.sweep.axes:
        raise ReportError(f"the sweep varies {', '.join(manifest.sweep.axes)}: the report does not yet compare "
                          "configurations across training axes (collect's tables and summary.csv do hold them, a "
                          "column per axis)")
    rules = manifest.sweep.analysis
    datasets = [d.name for d in manifest.sweep.datasets]
    metrics = effect_metrics(rules)
    exp = experiments(table, rules)
    grid = settings(manifest)
    resampled, other_clips = resampling(scores or {}, rules, len(manifest.sweep.grid.seeds),
                                        len(metrics) * max(planned_comparisons(grid, datasets).values()))
    effects = effects_vs_baseline(exp, grid, rules, resampled)
    focal = focal_effects(exp, grid, rules, resampled)
    between = dataset_differences(exp, grid, datasets, rules, resampled)
    source = provenance(manifest, table)
    comparisons = {"remedy vs baseline": effects, "focal loss on vs off": focal, "dataset vs dataset": between}
    found = warnings(manifest, table, problems, comparisons, source)
    if other_clips:
        found.append({"kind": "other_test_clips", "indices": [],
                      "message": f"{len(other_clips)} run(s) scored other test clips than the rest (the test data "
                                 f"changed between runs?): {', '.join(other_clips[:5])}; they are left out of the "
                                 "bootstrap, which needs the same clips in every run"})
    return Analysis(
        settings=rules,
        summary=summarize(table),
        experiments=exp,
        ranking=ranking(exp, datasets, rules),
        effects=effects,
        focal=focal,
        datasets=between,
        answer=answer(effects, exp, datasets, rules),
        warnings=found,
        provenance=source,
        seeds_configured=len(manifest.sweep.grid.seeds),
        dataset_order=datasets,
        resamples=resampled.bootstrap.resamples if resampled.bootstrap else None,
    )
