"""`hpc-radr resubmit`: run again exactly the configurations without a valid result, from the frozen manifest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hpc_radr.cli import dispatch as d
from hpc_radr.cli.output import print_warning, user_errors

if TYPE_CHECKING:
    from hpc_radr.job_plan import SlurmOptions


@d.with_slurm_options()
def resubmit(
    run_dir: Path | None = typer.Argument(None, help="Run directory [default: runs/latest]."),
    executor: d.Executor = d.ExecutorName.auto,
    workers: d.Workers = 2,
    dry_run: d.DryRun = False,
    as_json: d.AsJson = False,
    *,
    slurm: SlurmOptions,
) -> None:
    """Submit only the failed, cancelled, timed-out and missing runs (queued or running ones are left alone)."""
    from hpc_radr.latest import resolve_run_dir
    from hpc_radr.manifest import load
    from hpc_radr.submission import sweep_drift

    chosen = d.choose(executor, slurm.train.partition)
    with user_errors():
        manifest = load(resolve_run_dir(run_dir))
        drift = sweep_drift(manifest)
        if drift:
            print_warning(drift)
        d.run(manifest, chosen, workers, False, dry_run, as_json, slurm)


def register(app: typer.Typer) -> None:
    app.command()(resubmit)
