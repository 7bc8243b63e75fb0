"""`hpc-radr report`: the report that answers which remedy raises RADR recall without costing precision."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from hpc_radr.cli.output import console, emit_json, user_errors

# Warnings about how the sweep ran, not what its numbers mean: printed in full, not only counted.
LOUD = ("unused_gpu",)

# Shared by `report` and `collect`: operating points recomputed from the kept per-clip scores, no retraining.
PRECISION_TARGETS = typer.Option(None, "--precision-target", metavar="P",
                                 help="Report recall at precision >= P instead of the sweep file's [analysis] "
                                      "precision_targets (0 < P < 1; repeat for several).")
RECALL_TARGETS = typer.Option(None, "--recall-target", metavar="R",
                              help="Report precision at recall >= R instead of the sweep file's [analysis] "
                                   "recall_targets (0 < R < 1; repeat for several).")


def show_answer(content: dict) -> None:
    """The answer per dataset in a few lines, then where the whole report is (``content``: report.json)."""
    for entry in content["answer"]:
        better = entry.get("detects_better", [])  # reports built by earlier versions have other verdicts
        line = (f"{entry['dataset']}: detect better ({len(better)} of {entry['n_remedies']}): "
                f"{', '.join(e['remedy'] for e in better) or 'none'}")
        if entry.get("threshold_only"):
            line += ("; raise recall at 0.5 only (a moved threshold): "
                     f"{', '.join(e['remedy'] for e in entry['threshold_only'])}")
        if entry.get("not_applied"):
            line += ("; not applied on this data (upsampling added no samples): "
                     f"{', '.join(e['remedy'] for e in entry['not_applied'])}")
        console.print(line, markup=False, highlight=False)
    if content["warnings"]:
        kinds = sorted({w["kind"] for w in content["warnings"]})
        console.print(f"[yellow]{len(content['warnings'])} warning(s)[/] in the report: {', '.join(kinds)}")
    for warning in content["warnings"]:
        if warning["kind"] in LOUD:
            console.print(f"[bold yellow]warning:[/] {escape(warning['message'])}", highlight=False)
    console.print(f"report: {content['html']}", markup=False, highlight=False)


def report(
    run_dir: Path | None = typer.Argument(None, help="Run directory [default: runs/latest]."),
    as_json: bool = typer.Option(False, "--json", help="Answer, effects, rankings and warnings as JSON."),
    precision_targets: list[float] | None = PRECISION_TARGETS,
    recall_targets: list[float] | None = RECALL_TARGETS,
) -> None:
    """Write RUN_DIR/report/ (report.html with embedded figures, report.md, PNG figures, CSV and JSON tables):
    effects of each remedy against the baseline, paired by seed, with 95% intervals, rankings and warnings."""
    from hpc_radr.latest import resolve_run_dir
    from hpc_radr.manifest import load, with_targets
    from hpc_radr.report import build_report

    with user_errors():
        run = resolve_run_dir(run_dir)
        manifest = with_targets(load(run), precision_targets, recall_targets)
        built = build_report(run.path, manifest=manifest)
    content = built.as_dict()
    if as_json:
        emit_json(content)
        return
    show_answer(content)


def register(app: typer.Typer) -> None:
    app.command()(report)
