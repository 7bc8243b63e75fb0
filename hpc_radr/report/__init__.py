"""The report that answers the research question: which imbalance remedy raises RADR recall without costing
precision. ``build_report`` writes ``<run_dir>/report/`` (HTML, Markdown, PNG figures, CSV and JSON tables).

``update_report`` (what `collect` calls) rebuilds it only when its inputs changed: the merged table, the skipped
files, the frozen manifest and this package's code, fingerprinted in ``report.json``, which is written last. The
analysis (scipy) and the figures (matplotlib) are imported only to build, so an up-to-date check stays light.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from hpc_radr import __version__
from hpc_radr.atomic import plain, write_atomic
from hpc_radr.collect import kept_scores, merge
from hpc_radr.manifest import Manifest, load
from hpc_radr.run_dir import RunDir

if TYPE_CHECKING:
    from hpc_radr.report.analysis import Analysis

REPORT_DIR = "report"


@dataclass
class Report:
    """Where the report was written, and its machine-readable content."""

    html: Path
    markdown: Path
    figures: list[Path]
    data: Path
    analysis: Analysis
    fingerprint: str

    @property
    def effects(self) -> pd.DataFrame:
        return self.analysis.effects

    @property
    def warnings(self) -> list[dict]:
        return self.analysis.warnings

    def as_dict(self) -> dict:
        """JSON-ready (NaN becomes null): paths, the answer, every comparison and the warnings."""
        a = self.analysis
        content = {"fingerprint": self.fingerprint, "answer": a.answer, "warnings": a.warnings,
                   "provenance": a.provenance}
        return {
            "html": str(self.html), "markdown": str(self.markdown), "figures": [str(f) for f in self.figures],
            **plain(content, nan_as_null=True),
            **{name: _records(frame) for name, frame in _frames(a).items()},
        }


def _frames(analysis: Analysis) -> dict[str, pd.DataFrame]:
    return {"summary": analysis.summary, "ranking": analysis.ranking, "effects": analysis.effects,
            "focal": analysis.focal, "datasets": analysis.datasets}


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def _write(path: Path, data: bytes) -> None:
    write_atomic(path, lambda handle: handle.write(data))


@dataclass
class ReportFiles:
    """The report as `collect` leaves it: where it is, what report.json says, and whether this call rebuilt it."""

    html: Path
    content: dict
    rebuilt: bool

    def as_dict(self) -> dict:
        return self.content


def fingerprint(manifest: Manifest, table: pd.DataFrame, problems: list[str]) -> str:
    """Everything the report is made of; equal fingerprints mean an identical report."""
    digest = hashlib.sha256(f"hpc-radr {__version__}\n".encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    digest.update(manifest.run_dir.manifest.read_bytes())
    digest.update(manifest.sweep.analysis.model_dump_json().encode())  # targets may be given after the sweep
    digest.update(json.dumps([list(map(str, table.columns)), [str(t) for t in table.dtypes], problems]).encode())
    digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _up_to_date(out: Path, expected: str) -> dict | None:
    """report.json's content if it carries ``expected`` and every file it names is there."""
    try:
        content = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(content, dict) or content.get("fingerprint") != expected:
        return None
    named = [content.get("html"), content.get("markdown"), *content.get("figures", [])]
    if not all(isinstance(p, str) and (out / Path(p).name).is_file() for p in named):
        return None
    # the paths as seen from here: the run directory may have been named differently (or moved) at the build
    return {**content, "html": str(out / Path(content["html"]).name),
            "markdown": str(out / Path(content["markdown"]).name),
            "figures": [str(out / Path(p).name) for p in content.get("figures", [])]}


def update_report(manifest: Manifest, table: pd.DataFrame, problems: list[str]) -> ReportFiles:
    """The report of this merged table: kept when it is up to date, else built again."""
    expected = fingerprint(manifest, table, problems)
    content = _up_to_date(manifest.run_dir.path / REPORT_DIR, expected)
    if content is not None:
        return ReportFiles(Path(content["html"]), content, rebuilt=False)
    built = build_report(manifest.run_dir.path, (table, problems), manifest)
    return ReportFiles(built.html, built.as_dict(), rebuilt=True)


def build_report(run_dir: Path, merged: tuple[pd.DataFrame, list[str]] | None = None,
                 manifest: Manifest | None = None) -> Report:
    """Analyse the run directory's results and write the report; every file is replaced atomically and
    report.json, which marks the report whole and current, comes last.
    ``merged`` is collect's (table, problems) when it has just read the results."""
    from hpc_radr.report import figures, render
    from hpc_radr.report.analysis import analyse

    run_dir = Path(run_dir)
    manifest = manifest or load(RunDir(run_dir))
    table, problems = merged or merge(manifest)
    analysis = analyse(manifest, table, problems, kept_scores(manifest, table))
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
    report = Report(html=out / "report.html", markdown=out / "report.md",
                    figures=[out / name for name in images], data=out / "report.json", analysis=analysis,
                    fingerprint=fingerprint(manifest, table, problems))
    doc = render.document(analysis, list(images))
    _write(report.markdown, render.markdown(doc).encode())
    _write(report.html, render.to_html(doc, images, f"RADR imbalance remedies: {manifest.sweep.name}").encode())
    _write(report.data, (json.dumps(report.as_dict(), indent=2) + "\n").encode())
    return report
