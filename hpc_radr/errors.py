"""One base for the failures hpc-radr expects: bad input, a refusal by Slurm, data changed since submit, a full
disk met while writing. Each module raises its own subclass with a message that says what happened and what
to do; the command line prints any of them as one ``error:`` line and exits 2 (``cli/output.py``). Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class HpcRadrError(Exception):
    """An expected failure; ``str(err)`` is the whole message for the user."""
