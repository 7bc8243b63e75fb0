"""The `hpc-radr` command line: parses arguments and dispatches; each command lives in its own module."""

from __future__ import annotations

import typer

from hpc_radr.cli import collect, demo, plan, report, resubmit, run_task, scripts, status, submit

app = typer.Typer(
    name="hpc-radr",
    help="Imbalance-regularization sweeps of BirdNET custom-classifier training, on Slurm or this machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
for module in (plan, submit, status, resubmit, collect, report, run_task, scripts, demo):
    module.register(app)


def main() -> None:
    app()
