"""`hpc-radr plan`: the configurations of a sweep file, in index order."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from hpc_radr.cli.output import console, emit_json, errors, user_errors

SWEEP_HELP = "Sweep file (TOML) [default: jobs/imbalance_regularization.toml here, else the example that ships " \
             "with hpc-radr]."


def resolve_sweep(sweep: Path | None) -> Path:
    """The sweep file to use; when it is the bundled example, say where it is, so users can copy and edit it."""
    from hpc_radr.bundled import LOCAL_SWEEP, default_sweep

    if sweep is not None:
        return sweep
    found = default_sweep()
    if found != LOCAL_SWEEP:
        errors.print(f"note: no {LOCAL_SWEEP} here: using the example sweep that ships with hpc-radr, {found} "
                     "(copy it to change it)", markup=False, highlight=False)
    return found


def plan(
    sweep: Path | None = typer.Argument(None, help=SWEEP_HELP, show_default=False),
    literal: bool = typer.Option(False, "--literal", help="One run per configuration, even for identical ones."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list for machines."),
) -> None:
    """Print every configuration with its index and the run that produces it."""
    from hpc_radr.sweep import expand, load_sweep, unique_runs

    with user_errors():
        parsed, _ = load_sweep(resolve_sweep(sweep))
    configurations = expand(parsed, dedupe=not literal)
    if as_json:
        emit_json([c.as_dict() for c in configurations])
        return
    table = Table(title=f"{parsed.name}: {len(configurations)} configurations, "
                        f"{len(unique_runs(configurations))} runs")
    for column in ("index", "dataset", "mode", "ratio", "focal", "seed", "run_id"):
        table.add_column(column)
    for c in configurations:
        table.add_row(str(c.index), c.dataset, c.upsampling_mode, f"{c.upsampling_ratio:g}",
                      "on" if c.focal_loss else "off", str(c.seed), c.run_id)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(plan)
