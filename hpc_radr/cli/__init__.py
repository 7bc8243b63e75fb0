"""The `hpc-radr` command line: parses arguments and dispatches; each command lives in its own module."""

from __future__ import annotations

import os
import sys

import typer

from hpc_radr.cli import analyze, collect, demo, export, plan, report, resubmit, run_task, scripts, status, submit

app = typer.Typer(
    name="hpc-radr",
    help="Imbalance-regularization sweeps of BirdNET custom-classifier training, on Slurm or this machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
for module in (plan, submit, status, resubmit, collect, report, export, analyze, run_task, scripts, demo):
    module.register(app)


def main() -> None:
    try:
        app()
    except SystemExit as done:
        if "tensorflow" in sys.modules:
            _exit_now(done.code)
        raise


def _exit_now(code: object) -> None:
    """End a process that loaded TensorFlow (`run-task`) without Python's finalization, which then costs about
    1 CPU-second and 1.5 s per process (benchmarks/README.md); everything is written and closed by now."""
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
