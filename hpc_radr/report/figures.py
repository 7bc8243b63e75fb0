"""The report's figures as PNG bytes, drawn on matplotlib's Agg canvas (no display, no pyplot global state).

Only the report imports this module, so the command line never pays for matplotlib at start-up.
"""

from __future__ import annotations

import io

import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hpc_radr.report.analysis import NO_UPSAMPLING, Analysis, effect_metrics, metric_name

METRIC_AXIS = {
    "auprc": "test AUPRC (0-1)",
    "recall": "test recall at threshold 0.5 (0-1)",
    "precision": "test precision at threshold 0.5 (0-1)",
}
METRIC_TITLE = {"auprc": "AUPRC", "recall": "Recall", "precision": "Precision"}


def _axis(metric: str) -> str:
    return METRIC_AXIS.get(metric) or f"test {metric_name(metric)} (0-1)"


def _title(metric: str) -> str:
    return METRIC_TITLE.get(metric) or metric_name(metric).capitalize() + " (threshold chosen on validation)"
MODE_MARKERS = ("o", "s", "^", "D", "v")
NO_UPSAMPLING_MARKER = "P"
DPI = 110


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _limits(values: pd.Series) -> tuple[float, float]:
    """Tight around the data (the demo's metrics crowd near 1.0), never beyond the metric's 0-1 range."""
    values = values.dropna()
    if values.empty:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    pad = max(0.05, 0.08 * (high - low))
    low, high = max(0.0, low - pad), min(1.0, high + pad)
    margin = 0.03 * (high - low)
    return low - margin, high + margin


def _mode_styles(modes: list[str]) -> dict[str, tuple[str, tuple]]:
    palette = colormaps["tab10"]
    return {mode: (MODE_MARKERS[k % len(MODE_MARKERS)], palette(k % 10)) for k, mode in enumerate(modes)}


def _by_ratio_panel(ax: Axes, part: pd.DataFrame, metric: str, modes: list[str], ratios: list[float]) -> None:
    styles = _mode_styles(modes)
    step = 0.015 * ((max(ratios) - min(ratios)) or 1.0)
    shared = part[part["upsampling_mode"] == NO_UPSAMPLING]
    ax.scatter(shared["upsampling_ratio"], shared[metric], color="black", marker=NO_UPSAMPLING_MARKER, s=22,
               alpha=0.5, zorder=3)
    for k, mode in enumerate(modes):
        marker, colour = styles[mode]
        own = part[part["upsampling_mode"] == mode]
        ax.scatter(own["upsampling_ratio"] + (k - (len(modes) - 1) / 2) * step, own[metric], color=colour,
                   marker=marker, s=18, alpha=0.45, zorder=3)
        means = pd.concat([shared, own]).groupby("upsampling_ratio")[metric].mean()
        ax.plot(means.index, means.to_numpy(), color=colour, marker=marker, markersize=6, linewidth=1.6, zorder=4)
    ax.set_xticks(ratios)
    ax.grid(alpha=0.3)


def metric_by_ratio(analysis: Analysis, metric: str, modes: list[str], ratios: list[float],
                    focal_values: list[bool]) -> bytes:
    """One panel per dataset (rows) and focal setting (columns): seeds as points, their mean as a line."""
    exp = analysis.experiments
    datasets = analysis.dataset_order
    figure = Figure(figsize=(4.6 * len(focal_values), 3.2 * len(datasets) + 0.9), layout="constrained")
    axes = figure.subplots(len(datasets), len(focal_values), sharex=True, sharey=True, squeeze=False)
    for row, dataset in enumerate(datasets):
        for column, focal in enumerate(focal_values):
            ax = axes[row][column]
            part = exp[(exp["dataset"] == dataset) & (exp["focal_loss"] == focal)]
            _by_ratio_panel(ax, part, metric, modes, ratios)
            ax.set_title(f"{dataset}, focal loss {'on' if focal else 'off'}", fontsize=10)
            if row == len(datasets) - 1:
                ax.set_xlabel("upsampling ratio (positives raised to ratio x negatives)")
            if column == 0:
                ax.set_ylabel(_axis(metric))
    axes[0][0].set_ylim(*_limits(exp[metric]) if len(exp) else (0.0, 1.0))
    styles = _mode_styles(modes)
    handles = [Line2D([], [], color=colour, marker=marker, label=f"{mode} (mean over seeds)")
               for mode, (marker, colour) in styles.items()]
    handles.append(Line2D([], [], color="black", marker=NO_UPSAMPLING_MARKER, linestyle="",
                          label="ratio 0: no upsampling (one run shared by all modes)"))
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize=9,
                  title="lines: mean over seeds; small points: individual seeds", title_fontsize=9)
    figure.suptitle(f"{_title(metric)} on the test set against upsampling ratio")
    return _png(figure)


def precision_recall(analysis: Analysis, modes: list[str], ratios: list[float]) -> bytes:
    """Every setting's mean recall and precision: marker = mode, colour = ratio, filled = focal off."""
    exp = analysis.experiments
    datasets = analysis.dataset_order
    means = exp.groupby(["dataset", "upsampling_mode", "upsampling_ratio", "focal_loss"], sort=False)[
        ["recall", "precision"]].mean().reset_index()
    styles = _mode_styles(modes) | {NO_UPSAMPLING: (NO_UPSAMPLING_MARKER, "black")}
    viridis = colormaps["viridis"]
    colours = {ratio: viridis(0.85 * k / max(len(ratios) - 1, 1)) for k, ratio in enumerate(ratios)}
    figure = Figure(figsize=(4.4 * len(datasets) + 2.6, 4.6), layout="constrained")
    axes = figure.subplots(1, len(datasets), sharex=True, sharey=True, squeeze=False)[0]
    for ax, dataset in zip(axes, datasets, strict=True):
        for row in means[means["dataset"] == dataset].itertuples(index=False):
            colour = colours[row.upsampling_ratio]
            ax.scatter(row.recall, row.precision, s=60, marker=styles[row.upsampling_mode][0], linewidths=1.4,
                       edgecolors=colour, facecolors="none" if row.focal_loss else colour, alpha=0.85)
        ax.set_title(dataset, fontsize=10)
        ax.set_xlabel("recall at threshold 0.5 (mean over seeds, 0-1)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("precision at threshold 0.5 (mean over seeds, 0-1)")
    if len(means):
        axes[0].set_xlim(*_limits(means["recall"]))
        axes[0].set_ylim(*_limits(means["precision"]))
    grey = "dimgray"
    handles = [Line2D([], [], color=grey, marker=marker, linestyle="",
                      label="no upsampling (ratio 0)" if mode == NO_UPSAMPLING else mode)
               for mode, (marker, _) in styles.items()]
    handles += [Line2D([], [], color=colours[r], marker="o", linestyle="", label=f"ratio {r:g}") for r in ratios]
    handles += [Line2D([], [], color=grey, marker="o", linestyle="", label="focal loss off (filled)"),
                Line2D([], [], color=grey, marker="o", markerfacecolor="none", linestyle="",
                       label="focal loss on (hollow)")]
    figure.legend(handles=handles, loc="outside right upper", fontsize=9)
    figure.suptitle("Precision against recall of every setting (test set, mean over seeds)")
    return _png(figure)


def effects_forest(analysis: Analysis, metric: str) -> bytes:
    """Each setting minus its baseline, one panel per dataset: the mean over seeds with its t-interval (line)
    and bootstrap interval (thick), significant after adjustment in colour; the setting that names no training
    axis value is its label. For sweeps with training axes, where a plot against the ratio would pool them."""
    effects = analysis.effects[analysis.effects["metric"] == metric]
    datasets = analysis.dataset_order
    rows = max([int((effects["dataset"] == d).sum()) for d in datasets] + [1])
    figure = Figure(figsize=(7.5 * len(datasets), 0.34 * rows + 1.6), layout="constrained")
    axes = figure.subplots(1, len(datasets), sharex=True, squeeze=False)[0]
    for ax, dataset in zip(axes, datasets, strict=True):
        part = effects[effects["dataset"] == dataset].iloc[::-1]
        where = range(len(part))
        colours = ["tab:blue" if sig else "dimgray" for sig in part["significant"].fillna(False).astype(bool)]
        ax.hlines(where, part["ci_low"], part["ci_high"], colors=colours, linewidth=1.0)
        ax.hlines(where, part["boot_low"], part["boot_high"], colors=colours, linewidth=3.5, alpha=0.6)
        ax.scatter(part["mean"], where, color=colours, zorder=3, s=18)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(list(where), part["remedy"], fontsize=7)
        ax.set_title(dataset, fontsize=10)
        ax.set_xlabel(f"{metric_name(metric)}: setting minus baseline (mean over seeds)")
        ax.grid(axis="x", alpha=0.3)
    figure.suptitle(f"{_title(metric)}: each setting against its baseline (thin: t-interval over seeds, thick: "
                    "bootstrap over clips and seeds, blue: significant after adjustment)", fontsize=10)
    return _png(figure)


def draw(analysis: Analysis, modes: list[str], ratios: list[float], focal_values: list[bool]) -> dict[str, bytes]:
    """File name -> PNG bytes; nothing when no run has finished yet. A sweep with training axes gets the
    effects against its baseline instead of the plots against the upsampling ratio (which would pool the axes)."""
    if analysis.experiments.empty:
        return {}
    primary = effect_metrics(analysis.settings)[1]  # recall at the first precision target
    shown = ["auprc", "recall", "precision"] + ([primary] if analysis.experiments[primary].notna().any() else [])
    if analysis.axes:
        return {f"effect_{metric}.png": effects_forest(analysis, metric) for metric in shown}
    figures = {f"{metric}_by_ratio.png": metric_by_ratio(analysis, metric, modes, ratios, focal_values)
               for metric in shown}
    figures["precision_recall.png"] = precision_recall(analysis, modes, ratios)
    return figures

