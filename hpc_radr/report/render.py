"""The report as a document (headings, paragraphs, tables, figures), rendered to Markdown and to one HTML file.

The HTML embeds its figures as base64 PNG so it opens anywhere; the Markdown beside it links the PNG files.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from hpc_radr.collect import SUMMARY_METRICS
from hpc_radr.estimate import readable_hours
from hpc_radr.report.analysis import (
    MAX_SEEDS_SHOWN,
    VERDICTS,
    Analysis,
    axis_words,
    detection_metrics,
    effect_metrics,
    metric_name,
)
from hpc_radr.report.multiplicity import CORRECTIONS

LAYOUT = "columns: focal loss off / on; rows: datasets. Small points are the seeds, lines their mean; at ratio 0 " \
         "every mode is the same run (black plus)."
FIGURE_CAPTIONS = {
    "auprc_by_ratio.png": f"Test AUPRC against upsampling ratio, one line per mode; {LAYOUT}",
    "recall_by_ratio.png": "Test recall at threshold 0.5 against upsampling ratio (layout as above).",
    "precision_by_ratio.png": "Test precision at threshold 0.5 against upsampling ratio (layout as above).",
    "precision_recall.png": "Mean precision against mean recall of every setting, one panel per dataset: marker "
                            "= upsampling mode, colour = ratio, filled = focal loss off, hollow = on. Up and to "
                            "the right is better.",
}


def caption(name: str) -> str:
    """A figure's caption; the operating-point figures are named after their target."""
    if name in FIGURE_CAPTIONS:
        return FIGURE_CAPTIONS[name]
    if name.startswith("effect_"):
        return (f"Test {metric_name(name.removeprefix('effect_').removesuffix('.png'))}: each setting minus its "
                "baseline on the same dataset, paired by seed; one panel per dataset.")
    metric = name.removesuffix("_by_ratio.png")
    return (f"Test {metric_name(metric)} against upsampling ratio, the threshold chosen on each run's validation "
            f"split and applied to the test set; {LAYOUT}")


@dataclass
class Document:
    """An ordered list of blocks: (kind, payload). Kinds: heading, paragraph, bullets, table, figure, code."""

    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        self.blocks.append(("heading", (level, text, anchor)))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("bullets", items))

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (headers, rows)))

    def figure(self, name: str, caption: str) -> None:
        self.blocks.append(("figure", (name, caption)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))


def difference(row: pd.Series | dict | None) -> str:
    """``+0.100 [+0.080, +0.120]``, or why there is no interval."""
    if row is None or row["n"] == 0:
        return "n/a (no paired seeds)"
    if math.isnan(row["ci_low"]):
        return f"{row['mean']:+.3f} (1 seed, no interval)"
    return f"{row['mean']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


def mean_sd(mean: float, sd: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f}" if math.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"


def indices(values: list[int]) -> str:
    """0, 1, 2, 5 -> ``0-2, 5``."""
    spans: list[list[int]] = []
    for value in sorted(values):
        if spans and value == spans[-1][1] + 1:
            spans[-1][1] = value
        else:
            spans.append([value, value])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def tested(entry: dict) -> str:
    """``+0.100 [+0.050, +0.150], adjusted p 0.004``: the bootstrap interval where there is one, else the t one."""
    if entry["n"] == 0:
        return "n/a"
    if math.isnan(entry.get("boot_low", math.nan)):
        text = difference(entry) + (" (t over seeds)" if not math.isnan(entry["ci_low"]) else "")
    else:
        text = f"{entry['mean']:+.3f} [{entry['boot_low']:+.3f}, {entry['boot_high']:+.3f}]"
    if not math.isnan(entry.get("p_adjusted", math.nan)):
        text += f", adjusted p {entry['p_adjusted']:.3g}"
    return text


def _method(analysis: Analysis) -> str:
    rules = analysis.settings
    effects = analysis.effects
    family = int(effects["p_adjusted"].notna().sum()) if len(effects) else 0
    sources = set(effects["p_source"]) if len(effects) else set()
    if "bootstrap" in sources:
        test = (f"a paired bootstrap over test clips and seeds ({analysis.resamples} resamples, the same for every "
                "comparison)")
        shown = "95 % bootstrap intervals"
        if "t-test over seeds" in sources:
            test += ", or a paired t-test over seeds where the runs kept no per-clip scores"
            shown += " (t-intervals over seeds where marked)"
    else:
        test = "a paired t-test over seeds (no run kept per-clip scores, so there is no bootstrap)"
        shown = "95 % t-intervals over seeds"
    overrides = analysis.provenance.get("analysis_overrides")
    given = ("; ".join(f"{name} {values}" for name, values in overrides.items()) if overrides else "")
    return (f"Judged by {test}; a difference counts when its p-value, adjusted by {CORRECTIONS[rules.correction]} "
            f"over the {family} comparisons the verdicts use, is at most {rules.alpha:g}. Intervals shown are "
            f"{shown}, unadjusted."
            + (f" The targets were given when this report was built ({given}), not taken from the sweep file's "
               "[analysis]." if given else ""))


def baseline_words(analysis: Analysis) -> str:
    """The baseline as [baseline] declares it, and the axes it leaves at each setting's own value."""
    if not analysis.axes and analysis.baseline == {"upsampling_ratio": 0.0, "focal_loss": False}:
        return "ratio 0.0, focal loss off"
    declared = ", ".join(_baseline_value(name, value) for name, value in analysis.baseline.items())
    free = [axis_words(name) for name in analysis.axes if name not in analysis.baseline]
    return declared + (f"; each setting's own {', '.join(free)}" if free else "")


def _baseline_value(name: str, value: object) -> str:
    if name == "upsampling_ratio":
        return "no upsampling" if value == 0 else f"upsampling ratio {_cell(value)}"
    if name == "upsampling_mode":
        return f"{value} upsampling"
    if name == "focal_loss":
        return "focal loss on" if value else "focal loss off"
    return f"{axis_words(name)} {_cell(value)}"


def _answer(doc: Document, analysis: Analysis) -> None:
    rules = analysis.settings
    primary = effect_metrics(rules)[1]
    doc.heading(2, "Answer: which remedies raise RADR recall without costing precision?", "answer")
    doc.paragraph(
        f"A field team must fix its threshold before it sees new recordings, so recall without a cost in "
        f"precision is measured as {metric_name(primary)}: on each run's validation split the threshold that "
        f"reaches that precision with the most recall is chosen, then applied to the test set. A remedy detects "
        f"better when it raises that recall or the AUPRC, against the baseline of the same dataset "
        f"({baseline_words(analysis)}), paired by seed. One that raises recall only at BirdNET's fixed "
        f"threshold 0.5 moves the threshold: upsampling changes the class balance the head is trained on, "
        f"which raises every score, so "
        f"more calls and more false alarms pass 0.5 without the detector ranking calls any better. "
        + _method(analysis))
    for entry in analysis.answer:
        doc.heading(3, entry["dataset"])
        base = entry["baseline"]
        if base["n"]:
            doc.paragraph(f"Baseline ({base['n']} seed(s)): {metric_name(primary)} {_value(base[primary])}, AUPRC "
                          f"{_value(base['auprc'])}, recall {_value(base['recall'])} and precision "
                          f"{_value(base['precision'])} at 0.5.")
        else:
            doc.paragraph("The baseline has no completed run: no remedy can be judged on this dataset.")
        better = entry["detects_better"]
        if better:
            doc.paragraph(f"{len(better)} of {entry['n_remedies']} remedies detect better (largest gain in "
                          f"{metric_name(primary)} first):")
        else:
            doc.paragraph(f"None of the {entry['n_remedies']} remedies detects better by this criterion.")
        doc.bullets([_remedy_line(e, rules) for e in better])
        for verdict, text in (("threshold_only", "These raise recall at 0.5 only, with no better detection "
                                                 "shown: a moved threshold, which lets more false alarms through "
                                                 "too (see precision at 0.5):"),
                              ("detects_worse", "These detect worse:"),
                              ("mixed", "Mixed (one detection metric raised, another lowered):")):
            if entry[verdict]:
                doc.paragraph(text)
                doc.bullets([_remedy_line(e, rules) for e in entry[verdict]])
        if entry["no_gain"]:
            doc.paragraph("No detection gain or loss shown, nor a raised recall at 0.5 (after adjustment): "
                          + ", ".join(e["remedy"] for e in entry["no_gain"]) + ".")
        if entry["not_applied"]:
            doc.paragraph("Not applied on this data (upsampling added no samples, so no experiment was made): "
                          + ", ".join(e["remedy"] for e in entry["not_applied"]) + ".")
        if entry["undetermined"]:
            doc.paragraph("Undetermined (fewer than 2 paired seeds): "
                          + ", ".join(e["remedy"] for e in entry["undetermined"]) + ".")
    if analysis.warnings:
        kinds = sorted({w["kind"] for w in analysis.warnings})
        doc.paragraph(f"Read with the {len(analysis.warnings)} warning(s) below ({', '.join(kinds)}).")


def _value(value: float) -> str:
    return "n/a (no per-clip scores)" if math.isnan(value) else f"{value:.3f}"


def _remedy_line(entry: dict, rules) -> str:
    shown = [*detection_metrics(rules), "recall", "precision"]
    return f"{entry['remedy']}: " + "; ".join(f"{metric_name(m)} {tested(entry[m])}" for m in shown)


def _seeds(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"> {int(MAX_SEEDS_SHOWN)}" if math.isinf(value) else str(int(value))


TESTED_HEADERS = ["metric", "n", "Δ [t-CI over seeds]", "bootstrap CI", "p", "adjusted p"]


def _tested_rows(frame: pd.DataFrame, keys: list[str], verdict: bool = False) -> list[list[str]]:
    """One row per comparison and metric, the comparison's ``keys`` shown on its first row only."""
    rows = []
    for _, group in frame.groupby(keys, sort=False):
        for k, (_, r) in enumerate(group.iterrows()):
            boot = "n/a" if math.isnan(r["boot_low"]) else f"[{r['boot_low']:+.3f}, {r['boot_high']:+.3f}]"
            rows.append([str(r[key]) if k == 0 else "" for key in keys]
                        + [metric_name(r["metric"]), str(int(r["n"])), difference(r), boot, _p(r["p_value"]),
                           _p(r["p_adjusted"]), _seeds(r["seeds_needed"])]
                        + ([VERDICTS[r["verdict"]] if k == 0 else ""] if verdict else []))
    return rows


def _tables(doc: Document, analysis: Analysis) -> None:
    rules = analysis.settings
    metrics = effect_metrics(rules)
    headers = [*TESTED_HEADERS, f"seeds for width {rules.interval_width:g}"]
    doc.heading(2, "Effects against the baseline", "effects")
    doc.paragraph(
        f"Remedy minus baseline ({baseline_words(analysis)}) on the same dataset, paired by seed. Per metric: the "
        "mean difference over seeds; its t-interval over seeds (the test set taken as fixed); its bootstrap "
        "interval over test clips and seeds (includes the test set's own sampling); the p-value before and "
        f"after adjustment ({CORRECTIONS[rules.correction]}); and the seeds a t-interval would need to be at most "
        f"{rules.interval_width:g} wide at the spread seen, to decide whether to run more. Operating points: "
        "threshold chosen on validation, applied to the test set.")
    for dataset in analysis.dataset_order:
        doc.heading(3, dataset)
        doc.table(["remedy", *headers, "verdict"],
                  _tested_rows(analysis.effects[analysis.effects["dataset"] == dataset], ["remedy"], verdict=True))
    doc.heading(2, "Focal loss on vs off", "focal")
    focal = analysis.focal
    doc.paragraph("Focal loss on minus off for the same dataset and upsampling setting, paired by seed, with the same "
                  f"intervals; p-values adjusted by {CORRECTIONS[rules.correction]} over the "
                  f"{int(focal['p_adjusted'].notna().sum())} comparisons of this table, a family of its own (no "
                  "verdict rests on it).")
    doc.table(["dataset", "upsampling", *headers], _tested_rows(focal, ["dataset", "upsampling"]))
    doc.heading(2, "Ranking per dataset", "ranking")
    primary = metrics[1]
    doc.paragraph(f"Settings by mean test AUPRC over seeds (mean ± sd), with {metric_name(primary)} and recall and "
                  "precision at threshold 0.5.")
    for dataset in analysis.dataset_order:
        part = analysis.ranking[analysis.ranking["dataset"] == dataset]
        doc.heading(3, dataset)
        doc.table(["rank", "setting", "n", "AUPRC", metric_name(primary), "recall", "precision"],
                  [[str(r["rank"]), r["setting"], str(r["n_seeds"])]
                   + [mean_sd(r[f"{m}_mean"], r[f"{m}_std"]) for m in ("auprc", primary, "recall", "precision")]
                   for _, r in part.iterrows()])
    if not analysis.datasets.empty:
        doc.heading(2, "Datasets compared", "datasets")
        between = analysis.datasets
        doc.paragraph("Each pair of datasets: the earlier minus the later for the same setting, paired by seed and "
                      f"scored on the same test clips, with the same intervals; p-values adjusted by "
                      f"{CORRECTIONS[rules.correction]} over the {int(between['p_adjusted'].notna().sum())} "
                      "comparisons of these tables, a family of their own.")
        for (a, b), part in between.groupby(["dataset_a", "dataset_b"], sort=False):
            doc.heading(3, f"{a} minus {b}")
            doc.table(["setting", *headers], _tested_rows(part, ["setting"]))


def _p(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3g}"


def _figures(doc: Document, names: list[str]) -> None:
    doc.heading(2, "Figures", "figures")
    if not names:
        doc.paragraph("No figures: no run has finished yet.")
    for name in names:
        doc.figure(name, caption(name))


def _warnings(doc: Document, analysis: Analysis) -> None:
    doc.heading(2, "Warnings", "warnings")
    if not analysis.warnings:
        doc.paragraph("None.")
    doc.bullets([f"[{w['kind']}] {w['message']}" + (f" (indices {indices(w['indices'])})" if w["indices"] else "")
                 for w in analysis.warnings])


def _summary(doc: Document, analysis: Analysis) -> None:
    doc.heading(2, "Summary per configuration", "summary")
    doc.paragraph("Mean ± sd over completed seeds (n) of every configuration, as in summary.csv. The _opt metrics "
                  "use the F1-optimal threshold chosen on the test set itself (BirdNET's evaluation): they are "
                  "optimistic, shown for comparison only. Ratio 0.0 rows of different modes are the same runs.")
    rows = []
    for _, r in analysis.summary.iterrows():
        rows.append([r["dataset"], r["upsampling_mode"], f"{r['upsampling_ratio']:g}",
                     "on" if r["focal_loss"] else "off", *(_cell(r[name]) for name in analysis.axes),
                     str(r["n_seeds"])]
                    + [mean_sd(r[f"{m}_mean"], r[f"{m}_std"]) for m in SUMMARY_METRICS])
    doc.table(["dataset", "mode", "ratio", "focal", *analysis.axes, "n", *SUMMARY_METRICS], rows)


def _cell(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cost(doc: Document, analysis: Analysis) -> None:
    """What the sweep cost, beside what `submit --estimate` said it would."""
    cost = analysis.provenance.get("cost")
    if not cost:
        return
    estimated, actual = cost["estimated"], cost["actual"] or {"cpu_hours": {}, "total_cpu_hours": None,
                                                                 "wall_hours": None}
    doc.heading(2, "Cost", "cost")
    kinds = {k["kind"]: k for k in (estimated or {}).get("kinds", [])}
    rows = []
    for kind in ("embed", "train", "collect"):
        guess, spent = kinds.get(kind, {}).get("cpu_hours"), actual["cpu_hours"].get(kind)
        if guess is None and spent is None:
            continue
        rows.append([f"CPU-hours, {kind}", "-" if guess is None else f"{guess:.3f}",
                     "-" if spent is None else f"{spent:.3f}"])
    total = actual["total_cpu_hours"]
    rows.append(["CPU-hours, all", "-" if estimated is None else f"{estimated['cpu_hours']:.3f}",
                 "-" if total is None else f"{total:.3f}"])
    rows.append(["wall time", "-" if estimated is None else readable_hours(estimated["wall_hours"]),
                 readable_hours(actual["wall_hours"])])
    if estimated is None:
        doc.paragraph("CPU-hours the recorded timings account for (extraction, training runs, each training "
                      "process' import) and the wall time from the first extraction to the last result. No "
                      "estimate was kept (`submit --estimate` keeps one).")
    else:
        doc.paragraph(f"Estimated at submit ({estimated['made_at']}, calibrated by "
                      f"{estimated['calibration']['described']}; +-{estimated['uncertainty']:.0%}) against what "
                      "the recorded timings account for. The actual wall time runs from the first extraction to "
                      "the last result, so it includes queue waits, which the estimate does not.")
    doc.table(["", "estimated", "actual"], rows)


def _provenance(doc: Document, analysis: Analysis) -> None:
    p = analysis.provenance
    doc.heading(2, "How these results were produced", "provenance")
    versions = "; ".join(", ".join(f"{k} {v}" for k, v in found.items() if k in
                                   ("hpc-radr", "birdnet-analyzer", "tensorflow", "keras", "numpy"))
                         for found in p["versions"]) or "unknown (no result file)"
    doc.bullets([
        f"Run directory: {p['run_dir']} (sweep '{p['sweep_name']}', frozen {p['created_at']})",
        f"Configurations: {p['configurations']} ({p['runs']} training runs), {p['completed_configurations']} "
        f"with results; seeds configured: {analysis.seeds_configured}",
        f"Software (from the result files): {versions}",
        f"Evaluation protocol: {p['evaluation']} (recorded in results: {', '.join(p['evaluation_protocols']) or '-'})",
        f"Epochs: {p['epochs']} configured" + (f" (overrides at submit: {p['overrides']})" if p["overrides"] else ""),
        f"Data source: {p['data_source']}",
        f"BirdNET model sha256: {p['model_sha256']}",
        "Statistics: differences paired by seed; mean with a t-interval on n-1 degrees of freedom (scipy); "
        f"every comparison also with a paired bootstrap over test clips and seeds "
        f"(seed {analysis.settings.bootstrap_seed}, the same resamples for every comparison), p-values "
        f"adjusted by {CORRECTIONS[analysis.settings.correction]} within each family (remedies against the "
        "baseline, focal loss on vs off, dataset vs dataset); operating points with the threshold chosen on "
        "each run's validation split; ratio-0.0 runs counted once (mode 'none'); degenerate runs are flagged, "
        "not dropped.",
        f"Operating points: {_targets(analysis)}",
        f"Report generated {datetime.now(UTC).isoformat(timespec='seconds')} by hpc-radr",
    ])
    doc.paragraph("The sweep file as submitted:")
    doc.code(p["sweep_text"])


def _targets(analysis: Analysis) -> str:
    rules = analysis.settings
    named = ", ".join(metric_name(m) for m in detection_metrics(rules)[1:])
    overrides = analysis.provenance.get("analysis_overrides")
    if not overrides:
        return f"{named} (the sweep file's [analysis])"
    return (f"{named}, given when the report was built ({'; '.join(f'{k} {v}' for k, v in overrides.items())}), "
            "recomputed from each run's kept per-clip scores; runs without them have these metrics missing")


def document(analysis: Analysis, figure_names: list[str]) -> Document:
    """The whole report, answer first."""
    doc = Document()
    p = analysis.provenance
    doc.heading(1, f"RADR imbalance remedies: {p['sweep_name']}")
    doc.paragraph(f"{p['completed_configurations']} of {p['configurations']} configurations have results "
                  f"({p['run_dir']}).")
    _answer(doc, analysis)
    _tables(doc, analysis)
    _figures(doc, figure_names)
    _warnings(doc, analysis)
    _summary(doc, analysis)
    _cost(doc, analysis)
    _provenance(doc, analysis)
    return doc


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(doc: Document) -> str:
    """Markdown with the figures linked as files beside it."""
    out: list[str] = []
    for kind, payload in doc.blocks:
        if kind == "heading":
            level, text, _ = payload
            out.append(f"{'#' * level} {text}")
        elif kind == "paragraph":
            out.append(payload)
        elif kind == "bullets":
            out.append("\n".join(f"- {item}" for item in payload))
        elif kind == "table":
            headers, rows = payload
            lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "figure":
            name, caption = payload
            out.append(f"![{caption}]({name})\n\n*{caption}*")
        elif kind == "code":
            fence = "~~~~" if "```" in payload else "```"
            out.append(f"{fence}toml\n{payload.rstrip()}\n{fence}")
    return "\n\n".join(out) + "\n"


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""


def to_html(doc: Document, images: dict[str, bytes], title: str) -> str:
    """One self-contained HTML file: styles inline, figures as base64 data URIs."""
    esc = html.escape
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
           f"<style>{STYLE}</style></head><body>"]
    for kind, payload in doc.blocks:
        if kind == "heading":
            level, text, anchor = payload
            attribute = f' id="{anchor}"' if anchor else ""
            out.append(f"<h{level}{attribute}>{esc(text)}</h{level}>")
        elif kind == "paragraph":
            out.append(f"<p>{esc(payload)}</p>")
        elif kind == "bullets":
            out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in payload) + "</ul>")
        elif kind == "table":
            headers, rows = payload
            head = "".join(f"<th>{esc(h)}</th>" for h in headers)
            body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "figure":
            name, caption = payload
            data = base64.b64encode(images[name]).decode()
            out.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{esc(caption)}\">"
                       f"<figcaption>{esc(caption)} ({esc(name)})</figcaption></figure>")
        elif kind == "code":
            out.append(f"<pre>{esc(payload)}</pre>")
    out.append("</body></html>\n")
    return "\n".join(out)
