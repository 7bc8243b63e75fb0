"""Shared output helpers: JSON for machines, rich for people, one clear line for expected errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

# Wide tables stay readable when piped or logged (rich would otherwise assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _expected_errors() -> tuple[type[Exception], ...]:
    from hpc_radr.birdnet.model_files import ModelError
    from hpc_radr.datasets import DataError
    from hpc_radr.embedding_cache import CacheError
    from hpc_radr.manifest import RunDirError
    from hpc_radr.sweep import SweepError

    return (SweepError, DataError, ModelError, RunDirError, CacheError)


@contextmanager
def user_errors(extra: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Turn the library's validation errors into a message and exit code 2, without a traceback."""
    try:
        yield
    except _expected_errors() + extra as err:
        errors.print(f"[bold red]error:[/] {err}", markup=True, highlight=False)
        raise typer.Exit(2) from None
