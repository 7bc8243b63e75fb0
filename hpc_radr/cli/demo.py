"""`hpc-radr demo`: the whole sweep on the synthetic demo data, on this machine, ending with the table."""

from __future__ import annotations

from pathlib import Path

import typer

from hpc_radr.cli import collect, submit
from hpc_radr.cli.output import console
from hpc_radr.cli.plan import DEFAULT_SWEEP


def demo(
    run_dir: Path = typer.Option(Path("runs/demo"), "--run-dir", help="Run directory."),
    data: Path = typer.Option(Path("runs/demo-data"), "--data", help="Where the demo data is generated."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override the sweep's epochs."),
    workers: int = typer.Option(2, "--workers", min=1, help="Concurrent worker processes."),
) -> None:
    """Generate the synthetic tiered demo data (once), run all 108 configurations locally, collect."""
    from hpc_radr.demo_data import generate

    if not (data / "README.txt").exists():
        console.print(f"generating synthetic demo data in {data}")
        generate(data)
    submit.submit(sweep=DEFAULT_SWEEP, data=data, executor=submit.ExecutorName.local, run_dir=run_dir,
                  workers=workers, epochs=epochs, literal=False, force=False, model=None, as_json=False)
    collect.collect(run_dir=run_dir, as_json=False)


def register(app: typer.Typer) -> None:
    app.command()(demo)
