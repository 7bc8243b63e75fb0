"""The report as a document (headings, paragraphs, tables, figures), rendered to Markdown and to one HTML file.

The HTML embeds its figures as base64 PNG so it opens anywhere; the Markdown beside it links the PNG files.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from hpc_radr.collect import SUMMARY_METRICS
from hpc_radr.report.analysis import (
    CONFIDENCE,
    EFFECT_METRICS,
    PRECISION_TOLERANCE,
    VERDICTS,
    Analysis,
)

FIGURE_CAPTIONS = {
    "auprc_by_ratio.png": "Test AUPRC against upsampling ratio, one line per mode; columns: focal loss off / on; "
                          "rows: datasets. Small points are the seeds, lines their mean; at ratio 0 every mode is "
                          "the same run (black plus).",
    "recall_by_ratio.png": "Test recall at threshold 0.5 against upsampling ratio (layout as above).",
    "precision_by_ratio.png": "Test precision at threshold 0.5 against upsampling ratio (layout as above).",
    "precision_recall.png": "Mean precision against mean recall of every setting, one panel per dataset: marker "
                            "= upsampling mode, colour = ratio, filled = focal loss off, hollow = on. Up and to "
                            "the right is better.",
}
METRIC_NAMES = {"auprc": "AUPRC", "recall": "recall", "precision": "precision"}


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


def _by_metric(group: pd.DataFrame) -> dict[str, pd.Series]:
    return {row["metric"]: row for _, row in group.iterrows()}


def _difference_rows(frame: pd.DataFrame, keys: list[str], first: list[str],
                     extra: Callable[[pd.Series], list[str]] | None = None) -> list[list[str]]:
    rows = []
    for _, group in frame.groupby(keys, sort=False):
        metrics = _by_metric(group)
        head = group.iloc[0]
        rows.append([str(head[k]) for k in first] + [str(int(head["n"]))]
                    + [difference(metrics.get(m)) for m in EFFECT_METRICS] + (extra(head) if extra else []))
    return rows


def _answer(doc: Document, analysis: Analysis) -> None:
    tolerance = f"{PRECISION_TOLERANCE:.2f}"
    doc.heading(2, "Answer: which remedies raise RADR recall without costing precision?", "answer")
    doc.paragraph(
        f"A remedy counts when, paired by seed against the baseline on the same dataset (ratio 0.0, focal loss "
        f"off), the {CONFIDENCE:.0%} t-interval of its recall difference lies above 0 and the interval of its "
        f"precision difference does not reach below -{tolerance} (a precision loss of up to {tolerance}, about "
        f"one false alarm more per 50 detections, is tolerated). Recall and precision are at BirdNET's threshold "
        f"0.5 on the test set.")
    for entry in analysis.answer:
        doc.heading(3, entry["dataset"])
        base = entry["baseline"]
        if base["n"]:
            doc.paragraph(f"Baseline ({base['n']} seed(s)): recall {base['recall']:.3f}, precision "
                          f"{base['precision']:.3f}, AUPRC {base['auprc']:.3f}.")
        else:
            doc.paragraph("The baseline has no completed run: no remedy can be judged on this dataset.")
        helps = entry["helps"]
        if helps:
            doc.paragraph(f"{len(helps)} of {entry['n_remedies']} remedies raise recall without costing "
                          f"precision (best recall gain first):")
        else:
            doc.paragraph(f"None of the {entry['n_remedies']} remedies raises recall without costing precision "
                          f"by this criterion.")
        doc.bullets([_remedy_line(e) for e in helps])
        if entry["trade_off"]:
            doc.paragraph("These raise recall but may cost precision:")
            doc.bullets([_remedy_line(e) for e in entry["trade_off"]])
        if entry["undetermined"]:
            doc.paragraph("Undetermined (fewer than 2 paired seeds): "
                          + ", ".join(e["remedy"] for e in entry["undetermined"]) + ".")
    if analysis.warnings:
        kinds = sorted({w["kind"] for w in analysis.warnings})
        doc.paragraph(f"Read with the {len(analysis.warnings)} warning(s) below ({', '.join(kinds)}).")


def _remedy_line(entry: dict) -> str:
    return (f"{entry['remedy']}: recall {difference(entry['recall'])}, precision "
            f"{difference(entry['precision'])}, AUPRC {difference(entry['auprc'])}")


def _tables(doc: Document, analysis: Analysis) -> None:
    deltas = [f"Δ {METRIC_NAMES[m]} [{CONFIDENCE:.0%} CI]" for m in EFFECT_METRICS]
    doc.heading(2, "Effects against the baseline", "effects")
    doc.paragraph("Remedy minus baseline (ratio 0.0, focal loss off) on the same dataset, paired by seed: mean "
                  "difference over seeds and its t-interval. Intervals are per comparison, not adjusted for the "
                  f"number of comparisons; with {analysis.seeds_configured} seed(s) they are wide.")
    for dataset in analysis.dataset_order:
        part = analysis.effects[analysis.effects["dataset"] == dataset]
        doc.heading(3, dataset)
        doc.table(["remedy", "n", *deltas, "verdict"],
                  _difference_rows(part, ["remedy"], ["remedy"], lambda h: [VERDICTS[h["verdict"]]]))
    doc.heading(2, "Focal loss on vs off", "focal")
    doc.paragraph("Focal loss on minus off for the same dataset and upsampling setting, paired by seed.")
    doc.table(["dataset", "upsampling", "n", *deltas],
              _difference_rows(analysis.focal, ["dataset", "upsampling"], ["dataset", "upsampling"]))
    doc.heading(2, "Ranking per dataset", "ranking")
    doc.paragraph("Settings by mean test AUPRC over seeds (mean ± sd), with recall and precision at threshold 0.5.")
    for dataset in analysis.dataset_order:
        part = analysis.ranking[analysis.ranking["dataset"] == dataset]
        doc.heading(3, dataset)
        doc.table(["rank", "setting", "n", "AUPRC", "recall", "precision"],
                  [[str(r["rank"]), r["setting"], str(r["n_seeds"])]
                   + [mean_sd(r[f"{m}_mean"], r[f"{m}_std"]) for m in ("auprc", "recall", "precision")]
                   for _, r in part.iterrows()])
    if not analysis.datasets.empty:
        doc.heading(2, "Datasets compared", "datasets")
        for (a, b), part in analysis.datasets.groupby(["dataset_a", "dataset_b"], sort=False):
            doc.paragraph(f"{a} minus {b} for the same setting, paired by seed.")
            doc.table(["setting", "n", *deltas], _difference_rows(part, ["setting"], ["setting"]))


def _figures(doc: Document, names: list[str]) -> None:
    doc.heading(2, "Figures", "figures")
    if not names:
        doc.paragraph("No figures: no run has finished yet.")
    for name in names:
        doc.figure(name, FIGURE_CAPTIONS[name])


def _warnings(doc: Document, analysis: Analysis) -> None:
    doc.heading(2, "Warnings", "warnings")
    if not analysis.warnings:
        doc.paragraph("None.")
    doc.bullets([f"[{w['kind']}] {w['message']}" + (f" (indices {indices(w['indices'])})" if w["indices"] else "")
                 for w in analysis.warnings])


def _summary(doc: Document, analysis: Analysis) -> None:
    doc.heading(2, "Summary per configuration", "summary")
    doc.paragraph("Mean ± sd over completed seeds (n) of every configuration, as in summary.csv; the _opt metrics "
                  "use the F1-optimal threshold. Ratio 0.0 rows of different modes are the same runs.")
    rows = []
    for _, r in analysis.summary.iterrows():
        rows.append([r["dataset"], r["upsampling_mode"], f"{r['upsampling_ratio']:g}",
                     "on" if r["focal_loss"] else "off", str(r["n_seeds"])]
                    + [mean_sd(r[f"{m}_mean"], r[f"{m}_std"]) for m in SUMMARY_METRICS])
    doc.table(["dataset", "mode", "ratio", "focal", "n", *SUMMARY_METRICS], rows)


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
        "ratio-0.0 runs counted once (mode 'none'); degenerate runs are flagged, not dropped.",
        f"Report generated {datetime.now(UTC).isoformat(timespec='seconds')} by hpc-radr",
    ])
    doc.paragraph("The sweep file as submitted:")
    doc.code(p["sweep_text"])


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
