"""`hpc-radr collect`: merge results into results.csv / results.parquet, print the summary over seeds, and bring
the report (RUN_DIR/report/report.html) up to date."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from hpc_radr.atomic import plain
from hpc_radr.cli.output import console, emit_json, print_warning, user_errors
from hpc_radr.cli.report import PRECISION_TARGETS, RECALL_TARGETS, show_answer


def show_summary(summary) -> None:
    """The summary over seeds as a table for people."""
    table = Table(title="test metrics per configuration, mean ± sd over seeds (threshold 0.5)")
    for column in ("dataset", "mode", "ratio", "focal", "n", "AUPRC", "AUROC", "precision", "recall", "F1"):
        table.add_column(column, justify="right" if column not in ("dataset", "mode") else "left")
    for row in summary.itertuples(index=False):
        cells = [f"{getattr(row, m + '_mean'):.3f}±{getattr(row, m + '_std'):.3f}"
                 for m in ("auprc", "auroc", "precision", "recall", "f1")]
        table.add_row(row.dataset, row.upsampling_mode, f"{row.upsampling_ratio:g}", "on" if row.focal_loss else "off",
                      str(row.n_seeds), *cells)
    console.print(table)


def collect(
    run_dir: Path | None = typer.Argument(None, help="Run directory [default: runs/latest]."),
    as_json: bool = typer.Option(False, "--json",
                                 help="Rows, summary, and the report's answer, comparisons and warnings as JSON."),
    precision_targets: list[float] | None = PRECISION_TARGETS,
    recall_targets: list[float] | None = RECALL_TARGETS,
) -> None:
    """Merge per-run results (one row per configuration) and summarize over seeds; missing runs are listed.
    Then bring the report (effects of each remedy, rankings, figures, warnings) in RUN_DIR/report/ up to date:
    it is built again only when the results, the skipped files or the manifest changed."""
    from hpc_radr.collect import collect as collect_results
    from hpc_radr.latest import resolve_run_dir
    from hpc_radr.manifest import load, with_targets
    from hpc_radr.report import update_report
    from hpc_radr.submission import sweep_drift

    with user_errors():
        run = resolve_run_dir(run_dir)
        manifest = with_targets(load(run), precision_targets, recall_targets)
        found = collect_results(run.path, manifest)
        report = update_report(manifest, found.table, found.problems)
        drift = sweep_drift(manifest)
    if drift:
        print_warning(drift)
    content = report.as_dict()
    if as_json:
        # NaN (a missing run's metrics, a result without scores) as null: strict JSON, as report --json writes
        emit_json(plain({"files": found.files, "missing": found.missing, "failed": found.failed,
                         "problems": found.problems, "rows": found.table.to_dict(orient="records"),
                         "summary": found.summary.to_dict(orient="records"), "report": content["html"],
                         "report_rebuilt": report.rebuilt, "answer": content["answer"],
                         "effects": content["effects"], "focal": content["focal"], "datasets": content["datasets"],
                         "warnings": content["warnings"]}, nan_as_null=True))
        return
    if not found.summary.empty:
        show_summary(found.summary)
    done = int((found.table["state"] == "completed").sum())
    console.print(f"{done} of {len(found.table)} configurations have results; wrote {', '.join(found.files)}")
    if found.failed:
        console.print(f"[red]failed[/] (indices): {found.failed}")
    if found.missing:
        console.print(f"[yellow]missing[/] (indices): {found.missing}")
    for problem in found.problems:
        console.print(f"[yellow]skipped:[/] {problem}")
    show_answer(content)
    if not report.rebuilt:
        console.print("(report unchanged: no result, skipped file or manifest changed since it was built)")


def register(app: typer.Typer) -> None:
    app.command()(collect)
