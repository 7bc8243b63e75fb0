"""What the sweep says about the research question: paired effects of each remedy, rankings and warnings.

The unit of analysis is one training run per seed. At ratio 0.0 BirdNET never upsamples, so the rows of
every mode at 0.0 are one experiment: they are counted once, under the mode ``none``, never three times; in the
same way focal gamma and alpha, which BirdNET reads only with focal loss on, are blank (None) with it off.
A *setting* is a configuration without its seed: dataset, upsampling mode and ratio, focal loss, and the value
of each training axis the sweep varies (``Sweep.axes``). Each setting is compared with its baseline: the setting
of the same dataset with the values ``[baseline]`` declares (by default ratio 0.0 and focal loss off) and its own
values of every axis the baseline leaves free. Every comparison pairs runs by seed (same seed, same validation
split and initial weights), and gives the mean difference with a 95 % t-interval over seeds; with fewer than
two seeds no interval exists.

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
from hpc_radr.estimate import estimate_against_actual
from hpc_radr.manifest import Manifest
from hpc_radr.report.bootstrap import Bootstrap
from hpc_radr.report.multiplicity import adjust
from hpc_radr.results import RunScores, unused_gpu_warning
from hpc_radr.sweep import FOCAL_ONLY_AXES, AnalysisSettings

CONFIDENCE = 0.95
NO_UPSAMPLING = "none"
# best_epoch at or below this means early stopping kept (nearly) the initial weights.
DEGENERATE_BEST_EPOCH = 2
MAX_SEEDS_SHOWN = 1000  # "seeds needed" beyond this is shown as more than it


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
    axes: list[str]  # the training axes the sweep varies, in expansion order (empty for the 108-run study)
    baseline: dict  # the values [baseline] declares


AXIS_WORDS = {"focal_loss_gamma": "gamma", "focal_loss_alpha": "alpha", "val_split": "validation split"}


def axis_words(name: str) -> str:
    """A training axis as the report names it: ``gamma``, ``hidden units``."""
    return AXIS_WORDS.get(name, name.replace("_", " "))


def _words(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def label(mode: str, ratio: float, focal: bool, settings: dict | None = None) -> str:
    """A setting in words: ``smote x1 + focal loss`` in a sweep without training axes; with them, every value,
    e.g. ``linear x1, focal loss (gamma 4), hidden units 512, dropout 0.25``."""
    if not settings:
        parts = [f"{mode} x{ratio:g}"] if ratio > 0 else []
        if focal:
            parts.append("focal loss")
        return " + ".join(parts) or "baseline (no upsampling, no focal loss)"
    given = {name: value for name, value in settings.items() if not _missing(value)}
    focal_details = [f"{AXIS_WORDS[n]} {_words(v)}" for n, v in given.items() if n in FOCAL_ONLY_AXES]
    words = [f"{mode} x{ratio:g}" if ratio > 0 else "no upsampling",
             ("focal loss" + (f" ({', '.join(focal_details)})" if focal_details else "")) if focal
             else "no focal loss"]
    words += [f"{axis_words(n)} {_words(v)}" for n, v in given.items()
              if n not in FOCAL_ONLY_AXES]
    return ", ".join(words)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def setting_columns(axes: list[str]) -> list[str]:
    """The columns that name a setting: the grid's and the sweep's training axes."""
    return GRID_COLUMNS + list(axes)


def _collapse(frame: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Equal experiments made equal rows: mode ``none`` at ratio 0.0, focal-only axes blank with focal loss off."""
    frame = frame.assign(upsampling_mode=frame["upsampling_mode"].where(frame["upsampling_ratio"] != 0.0,
                                                                        NO_UPSAMPLING))
    focal_only = [name for name in axes if name in FOCAL_ONLY_AXES]
    if focal_only:
        frame = frame.assign(**{name: frame[name].where(frame["focal_loss"].astype(bool)) for name in focal_only})
    return frame


def _collapsed(setting: dict) -> dict:
    """``_collapse`` for one setting given as a dict (blank values as None)."""
    setting = {name: None if _missing(value) else value for name, value in setting.items()}
    if setting["upsampling_ratio"] == 0.0:
        setting["upsampling_mode"] = NO_UPSAMPLING
    if not setting["focal_loss"]:
        setting |= {name: None for name in FOCAL_ONLY_AXES if name in setting}
    return setting


@dataclass(frozen=True)
class Baseline:
    """What each setting is compared with: ``[baseline]``'s values, the setting's own for every other axis."""

    values: dict

    def of(self, setting: dict) -> dict:
        return _collapsed({**setting, **self.values})

    def is_baseline(self, setting: dict) -> bool:
        return _collapsed(setting) == self.of(setting)

    def in_grid(self, grid: pd.DataFrame, setting: dict) -> bool:
        return not _select(grid, **self.of(setting)).empty

    def words(self) -> str:
        """The declared values in words ("ratio 0.0 with focal loss off" for the default)."""
        if self.values == {"upsampling_ratio": 0.0, "focal_loss": False}:
            return "ratio 0.0 with focal loss off"
        return ", ".join(f"{name} {_words(value)}" for name, value in self.values.items())


def _settings_of(frame: pd.DataFrame, axes: list[str]) -> list[dict]:
    """Each row's setting as a dict, blank values as None."""
    return [_collapsed(row) for row in frame[setting_columns(axes)].to_dict("records")]


def _axis_values(setting: dict, axes: list[str]) -> dict:
    return {name: setting[name] for name in axes}


def experiments(table: pd.DataFrame, rules: AnalysisSettings, axes: list[str] = ()) -> pd.DataFrame:
    """Completed runs, one row per setting and seed (identical runs of a --literal sweep averaged).

    ``upsampled``: whether BirdNET's upsampling added samples to that run. It adds none when the positives of
    the training split already reach int(max(positives, negatives) x ratio); such a run trained exactly like
    one without upsampling."""
    metrics = [*SUMMARY_METRICS, *operating_point_columns(rules)[2:]]
    keys = setting_columns(axes)
    columns = keys + ["seed", "run_id", "state", *metrics, "n_fit_positive", "n_fit_positive_upsampled"]
    done = table.reindex(columns=columns)
    done = done[done["state"] == "completed"].drop_duplicates("run_id")
    done = done.assign(upsampled=done["n_fit_positive_upsampled"] > done["n_fit_positive"])
    grouped = _collapse(done, axes).groupby(keys + ["seed"], sort=False, dropna=False)
    # run_id: the first run of the setting and seed, whose per-clip scores the bootstrap resamples
    return (grouped[metrics].mean().join(grouped["upsampled"].any()).join(grouped["run_id"].first())
            .reset_index())


def settings(manifest: Manifest) -> pd.DataFrame:
    """Every setting the sweep asked for, in index order, whether or not it has results."""
    axes = list(manifest.sweep.axes)
    frame = pd.DataFrame([c.row() for c in manifest.configurations])
    return _collapse(frame, axes)[setting_columns(axes)].drop_duplicates().reset_index(drop=True)


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
    """The rows with these values; a blank value (None, NaN) selects blank cells."""
    mask = np.ones(len(frame), dtype=bool)
    for column, value in values.items():
        mask &= (frame[column].isna() if _missing(value) else frame[column] == value).to_numpy()
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


def effects_vs_baseline(exp: pd.DataFrame, grid: pd.DataFrame, rules: AnalysisSettings, resampling: _Resampling,
                        baseline: Baseline, axes: list[str]) -> pd.DataFrame:
    """Each setting minus its baseline (``Baseline``) on the same dataset, paired by seed: t-interval over seeds,
    bootstrap interval over clips and seeds, p-value adjusted over all of them, verdict."""
    keys = setting_columns(axes) + ["remedy"]
    metrics = effect_metrics(rules)
    inert = set(_inert_settings(exp, axes))
    rows: list[dict] = []
    for s in _settings_of(grid, axes):
        if baseline.is_baseline(s) or not baseline.in_grid(grid, s):
            continue
        reference = baseline.of(s)
        # upsampling that added nothing, where nothing else differs from the baseline: no experiment
        tested = not (_key(s) in inert and _collapsed({**s, "upsampling_mode": reference["upsampling_mode"],
                                                       "upsampling_ratio": reference["upsampling_ratio"]})
                      == reference)
        rows += _paired_rows({**s, "remedy": _label_of(s, axes)}, _select(exp, **s), _select(exp, **reference),
                             metrics, resampling if tested else None, rules.interval_width)
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


def _label_of(setting: dict, axes: list[str]) -> str:
    return label(setting["upsampling_mode"], setting["upsampling_ratio"], setting["focal_loss"],
                 _axis_values(setting, axes))


def _key(setting: dict) -> tuple:
    return tuple(_collapsed(setting).values())


def _inert_settings(exp: pd.DataFrame, axes: list[str]) -> list[tuple]:
    """The settings (as ``_key`` tuples) with upsampling that added no sample in any of their runs."""
    upsampling = exp[exp["upsampling_ratio"] > 0]
    if upsampling.empty:
        return []
    applied = upsampling.groupby(setting_columns(axes), sort=False, dropna=False)["upsampled"].any()
    return [_key(dict(zip(setting_columns(axes), setting, strict=True))) for setting, used in applied.items()
            if not used]


def _focal_pairs(grid: pd.DataFrame, axes: list[str]) -> list[tuple[dict, dict]]:
    """(focal on, focal off) settings that differ only in focal loss (and the axes it alone reads)."""
    off = {_key({**s, "focal_loss": True}): s for s in _settings_of(grid, axes) if not s["focal_loss"]}
    pairs = []
    for s in _settings_of(grid, axes):
        if s["focal_loss"]:
            twin = off.get(_key({**s, **{name: None for name in FOCAL_ONLY_AXES if name in s}}))
            if twin is not None:
                pairs.append((s, twin))
    return pairs


def focal_effects(exp: pd.DataFrame, grid: pd.DataFrame, rules: AnalysisSettings,
                  resampling: _Resampling, axes: list[str]) -> pd.DataFrame:
    """Focal loss on minus off for every dataset and other setting, paired by seed, tested like the remedies
    but as a family of its own (these comparisons make no verdict)."""
    keys = ["dataset", "upsampling_mode", "upsampling_ratio", *axes, "upsampling"]
    rows: list[dict] = []
    for on, off in _focal_pairs(grid, axes):
        words = (_label_of(on, axes) if axes else
                 label(on["upsampling_mode"], on["upsampling_ratio"], False) if on["upsampling_ratio"] > 0
                 else "no upsampling")
        rows += _paired_rows({**{k: on[k] for k in keys[:-1]}, "upsampling": words},
                             _select(exp, **on), _select(exp, **off), effect_metrics(rules), resampling,
                             rules.interval_width)
    return _tested_frame(rows, keys, rules)


def dataset_differences(exp: pd.DataFrame, grid: pd.DataFrame, datasets: list[str], rules: AnalysisSettings,
                        resampling: _Resampling, axes: list[str]) -> pd.DataFrame:
    """The same setting on two datasets (earlier minus later in the sweep file), paired by seed and scored on the
    same test clips, tested as a family of its own."""
    shared = setting_columns(axes)[1:]
    keys = ["dataset_a", "dataset_b", *shared, "setting"]
    rows: list[dict] = []
    for a, b in itertools.combinations(datasets, 2):
        for s in _settings_of(grid[grid["dataset"] == a], axes):
            where = {k: s[k] for k in shared}
            rows += _paired_rows({"dataset_a": a, "dataset_b": b, **where, "setting": _label_of(s, axes)},
                                 _select(exp, dataset=a, **where), _select(exp, dataset=b, **where),
                                 effect_metrics(rules), resampling, rules.interval_width)
    return _tested_frame(rows, keys, rules)


def ranking(exp: pd.DataFrame, datasets: list[str], rules: AnalysisSettings, axes: list[str]) -> pd.DataFrame:
    """Settings per dataset by mean AUPRC over seeds (recall, then precision, break ties)."""
    metrics = ["auprc", "recall", "precision", effect_metrics(rules)[1]]
    grouped = exp.groupby(setting_columns(axes), sort=False, dropna=False)[metrics]
    frame = grouped.agg(["mean", "std"])
    frame.columns = [f"{metric}_{stat}" for metric, stat in frame.columns]
    frame.insert(0, "n_seeds", grouped.size())
    frame = frame.reset_index()
    frame.insert(1, "setting", [_label_of(s, axes) for s in _settings_of(frame, axes)])
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


def answer(effects: pd.DataFrame, exp: pd.DataFrame, datasets: list[str], rules: AnalysisSettings,
           baseline: Baseline, axes: list[str]) -> list[dict]:
    """Per dataset: the remedies by verdict, each with every compared metric (best gain in the first precision
    target's recall first). The baseline's metrics are its mean over seeds (and over the axes it leaves free)."""
    metrics = effect_metrics(rules)
    result = []
    baselines = exp[[baseline.is_baseline(s) for s in _settings_of(exp, axes)]] if len(exp) else exp
    for dataset in datasets:
        base = baselines[baselines["dataset"] == dataset]
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
    axes = list(manifest.sweep.axes)
    shared_focal = [name for name in axes if name in FOCAL_ONLY_AXES]
    if shared_focal and False in grid.focal_loss:
        off = _indices(table, ~table["focal_loss"].astype(bool))
        if manifest.record.dedupe:
            warn("shared_runs", f"with focal loss off, the rows of every {' and '.join(shared_focal)} are one run "
                                "per setting and seed (BirdNET reads them only with focal loss on): the tables "
                                "repeat them, the analysis counts each run once (left blank)", off)
        else:
            warn("shared_runs", f"with focal loss off, the rows of every {' and '.join(shared_focal)} were trained "
                                "separately (--literal) but are the same experiment; the analysis averages them "
                                "into one (left blank)", off)
    exp = experiments(table, manifest.sweep.analysis, axes)
    inert_keys = _inert_settings(exp, axes)
    inert = set(inert_keys)
    if inert:
        described = "; ".join(f"{key[0]} {_label_of(dict(zip(setting_columns(axes), key, strict=True)), axes)}"
                              for key in inert_keys)
        rows = table["upsampling_ratio"].gt(0) & pd.Series(
            [_key(s) in inert for s in _settings_of(table, axes)], index=table.index)
        warn("not_applied", f"upsampling added no samples in {len(inert)} setting(s), in every seed: {described}. "
                            "The positives of the training split already reached int(max(positives, negatives) x "
                            "ratio), so these runs trained as without upsampling; their upsampling is reported as "
                            "not applied, not as an effect of zero (with focal loss they measure focal loss alone)",
             _indices(table, rows))
    baseline = Baseline(manifest.sweep.baseline_values())
    if not any(baseline.is_baseline(s) for s in _settings_of(settings(manifest), axes)):
        warn("no_baseline", f"the grid has no baseline ({baseline.words()}): no effects against it")
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


def planned_comparisons(grid: pd.DataFrame, datasets: list[str], baseline: Baseline, axes: list[str],
                        ) -> dict[str, int]:
    """Settings compared in each family (times the metrics: its comparisons), whether or not they have results."""
    remedies = sum(not baseline.is_baseline(s) and baseline.in_grid(grid, s) for s in _settings_of(grid, axes))
    between = sum(int((grid["dataset"] == a).sum()) for a, _ in itertools.combinations(datasets, 2))
    return {"remedy vs baseline": remedies, "focal loss on vs off": len(_focal_pairs(grid, axes)),
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
    rules = manifest.sweep.analysis
    datasets = [d.name for d in manifest.sweep.datasets]
    axes = list(manifest.sweep.axes)
    baseline = Baseline(manifest.sweep.baseline_values())
    metrics = effect_metrics(rules)
    exp = experiments(table, rules, axes)
    grid = settings(manifest)
    planned = planned_comparisons(grid, datasets, baseline, axes)
    resampled, other_clips = resampling(scores or {}, rules, len(manifest.sweep.grid.seeds),
                                        len(metrics) * max(planned.values()))
    effects = effects_vs_baseline(exp, grid, rules, resampled, baseline, axes)
    focal = focal_effects(exp, grid, rules, resampled, axes)
    between = dataset_differences(exp, grid, datasets, rules, resampled, axes)
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
        ranking=ranking(exp, datasets, rules, axes),
        effects=effects,
        focal=focal,
        datasets=between,
        answer=answer(effects, exp, datasets, rules, baseline, axes),
        warnings=found,
        provenance=source,
        seeds_configured=len(manifest.sweep.grid.seeds),
        dataset_order=datasets,
        resamples=resampled.bootstrap.resamples if resampled.bootstrap else None,
        axes=axes,
        baseline=baseline.values,
    )
