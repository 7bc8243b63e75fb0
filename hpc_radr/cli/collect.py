"""`hpc-radr collect`: merge results into results.csv / results.parquet and print the summary over seeds."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from hpc_radr.cli.output import console, emit_json, user_errors


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
    as_json: bool = typer.Option(False, "--json", help="Rows and summary as JSON."),
) -> None:
    """Merge per-run results (one row per configuration) and summarize over seeds; missing runs are listed."""
    from hpc_radr.collect import collect as merge
    from hpc_radr.manifest import resolve_run_dir

    with user_errors():
        found = merge(resolve_run_dir(run_dir).path)
    if as_json:
        emit_json({"files": found.files, "missing": found.missing, "failed": found.failed,
                   "problems": found.problems, "rows": found.table.to_dict(orient="records"),
                   "summary": found.summary.to_dict(orient="records")})
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


def register(app: typer.Typer) -> None:
    app.command()(collect)
