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


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's expected failures (``HpcRadrError``), and a full disk or read-only folder met while
    writing, into one message and exit code 2, without a traceback. Files are written atomically, so a failed
    write leaves the previous whole file in place; the message says which path failed and why."""
    from hpc_radr.errors import HpcRadrError
    from hpc_radr.storage import describe, hint, storage_error

    try:
        yield
    except HpcRadrError as err:
        fail(str(err))
    except OSError as err:
        fault = storage_error(err)
        if fault is None:
            raise
        fail(f"{describe(fault)}; nothing was left half-written; {hint(fault)}")


def print_error(message: str) -> None:
    """The one way an error reaches the user: one line on stderr (paths may hold [...], so no markup)."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def print_warning(message: str) -> None:
    errors.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def fail(message: str, code: int = 2) -> NoReturn:
    print_error(message)
    raise typer.Exit(code)
