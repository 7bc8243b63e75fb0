"""`hpc-radr resubmit`: run again exactly the configurations without a valid result, from the frozen manifest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hpc_radr.cli import dispatch as d
from hpc_radr.cli.output import user_errors

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
    from hpc_radr.executors.local import ExecutorError
    from hpc_radr.executors.slurm import SlurmError
    from hpc_radr.manifest import load, resolve_run_dir
    from hpc_radr.submission import sweep_drift

    chosen = d.choose(executor, slurm.train.partition)
    with user_errors((SlurmError, ExecutorError)):
        manifest = load(resolve_run_dir(run_dir))
        d.warn(sweep_drift(manifest))
        d.run(manifest, chosen, workers, False, dry_run, as_json, slurm)


def register(app: typer.Typer) -> None:
    app.command()(resubmit)
