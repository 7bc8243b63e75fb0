"""Shared output helpers: JSON for machines, rich for people, one clear line for expected errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

# Wide tables stay readable when piped or logged (rich would otherwise assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160)
# Errors and warnings are one line each however long their paths: wrapping them at 80 columns when stderr is
# not a terminal (Slurm logs, CI, pipes) breaks them apart for grep and for people alike.
errors = Console(stderr=True, soft_wrap=True)


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _expected_errors() -> tuple[type[Exception], ...]:
    from hpc_radr.birdnet.model_files import ModelError
    from hpc_radr.datasets import DataError
    from hpc_radr.embedding_cache import CacheError
    from hpc_radr.job_plan import PlanError
    from hpc_radr.manifest import RunDirError
    from hpc_radr.storage import NotWritable
    from hpc_radr.sweep import SweepError

    return (SweepError, DataError, ModelError, RunDirError, CacheError, NotWritable, PlanError)


@contextmanager
def user_errors(extra: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Turn the library's validation errors, and a full disk or read-only folder met while writing, into one
    message and exit code 2, without a traceback. Files are written atomically, so a failed write leaves the
    previous whole file in place; the message says which path failed and why."""
    from hpc_radr.storage import describe, hint, storage_error

    try:
        yield
    except _expected_errors() + extra as err:
        _fail(str(err))
    except OSError as err:
        fault = storage_error(err)
        if fault is None:
            raise
        _fail(f"{describe(fault)}; nothing was left half-written; {hint(fault)}")


def _fail(message: str) -> NoReturn:
    errors.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)  # paths may hold [...]
    raise typer.Exit(2)
