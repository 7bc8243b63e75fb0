"""`hpc-radr demo`: the whole sweep on the synthetic demo data, on this machine, ending with the table."""

from __future__ import annotations

from pathlib import Path

import typer

from hpc_radr.cli import collect, dispatch
from hpc_radr.cli.output import console, user_errors

DEMO_EPOCHS = 20  # the demo profile: 108 configurations in minutes on 2 cores


def demo(
    run_dir: Path = typer.Option(Path("runs/demo"), "--run-dir", help="Run directory."),
    data: Path = typer.Option(Path("runs/demo-data"), "--data", help="Where the demo data is generated."),
    epochs: int = typer.Option(DEMO_EPOCHS, "--epochs", min=1, help="Training epochs (the sweep file says 50)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Concurrent worker processes."),
) -> None:
    """Generate the synthetic tiered demo data (once), run all 108 configurations locally, collect."""
    from hpc_radr.demo_data import generate

    if not (data / "README.txt").exists():
        console.print(f"generating synthetic demo data in {data}")
        generate(data)
    from hpc_radr.bundled import default_sweep
    from hpc_radr.submission import prepare

    with user_errors():
        manifest = prepare(default_sweep(), run_dir, data, None, dedupe=True,
                           overrides={"epochs": epochs})
    try:
        dispatch.run(manifest, dispatch.ExecutorName.local, workers, False, False, False, None)
    finally:
        collect.collect(run_dir=run_dir, as_json=False, precision_targets=None, recall_targets=None)


def register(app: typer.Typer) -> None:
    app.command()(demo)
