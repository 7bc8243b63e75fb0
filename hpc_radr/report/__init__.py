"""The report that answers the research question: which imbalance remedy raises RADR recall without costing
precision. ``build_report`` writes ``<run_dir>/report/`` (HTML, Markdown, PNG figures, CSV and JSON tables).

matplotlib is imported only when figures are drawn, so importing this package stays light.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hpc_radr.atomic import write_atomic
from hpc_radr.collect import merge
from hpc_radr.manifest import RunDir, load
from hpc_radr.report import render
from hpc_radr.report.analysis import Analysis, analyse

REPORT_DIR = "report"


@dataclass
class Report:
    """Where the report was written, and its machine-readable content."""

    directory: Path
    html: Path
    markdown: Path
    figures: list[Path]
    data: Path
    analysis: Analysis

    @property
    def summary(self) -> pd.DataFrame:
        return self.analysis.summary

    @property
    def effects(self) -> pd.DataFrame:
        return self.analysis.effects

    @property
    def warnings(self) -> list[dict]:
        return self.analysis.warnings

    def as_dict(self) -> dict:
        """JSON-ready (NaN becomes null): paths, the answer, every comparison and the warnings."""
        a = self.analysis
        content = {"answer": a.answer, "warnings": a.warnings, "provenance": a.provenance}
        return {
            "html": str(self.html), "markdown": str(self.markdown), "figures": [str(f) for f in self.figures],
            **_plain(content),
            **{name: _records(frame) for name, frame in _frames(a).items()},
        }


def _frames(analysis: Analysis) -> dict[str, pd.DataFrame]:
    return {"summary": analysis.summary, "ranking": analysis.ranking, "effects": analysis.effects,
            "focal": analysis.focal, "datasets": analysis.datasets}


def _plain(value: object) -> object:
    """Plain JSON values: NaN (an undefined interval, a missing mean) becomes None."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def _write(path: Path, data: bytes) -> None:
    write_atomic(path, lambda handle: handle.write(data))


def build_report(run_dir: Path, merged: tuple[pd.DataFrame, list[str]] | None = None) -> Report:
    """Analyse the run directory's results and write the report; every file is replaced atomically.
    ``merged`` is collect's (table, problems) when it has just read the results."""
    from hpc_radr.report import figures

    run_dir = Path(run_dir)
    manifest = load(RunDir(run_dir))
    table, problems = merged or merge(run_dir)
    analysis = analyse(manifest, table, problems)
    grid = manifest.sweep.grid
    images = figures.draw(analysis, list(grid.upsampling_modes), sorted(grid.upsampling_ratios),
                          list(grid.focal_loss))
    out = run_dir / REPORT_DIR
    for name, data in images.items():
        _write(out / name, data)
    for stale in out.glob("*.png"):
        if stale.name not in images:
            stale.unlink()
    for name, frame in _frames(analysis).items():
        _write(out / f"{name}.csv", frame.to_csv(index=False).encode())
    report = Report(directory=out, html=out / "report.html", markdown=out / "report.md",
                    figures=[out / name for name in images], data=out / "report.json", analysis=analysis)
    _write(report.data, (json.dumps(report.as_dict(), indent=2) + "\n").encode())
    doc = render.document(analysis, list(images))
    _write(report.markdown, render.markdown(doc).encode())
    _write(report.html, render.to_html(doc, images, f"RADR imbalance remedies: {manifest.sweep.name}").encode())
    return report
