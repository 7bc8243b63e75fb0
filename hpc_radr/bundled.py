"""Files that ship inside the package: the sbatch templates and the example sweeps.

They live at the top of the repository (``sbatch_templates/``, ``jobs/``) and are installed as the packages
``hpc_radr.sbatch_templates`` and ``hpc_radr.jobs`` (see pyproject.toml), so an installed hpc-radr, from a wheel
or a checkout, finds them from any working directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

EXAMPLE_SWEEP = "imbalance_regularization.toml"
# Where users keep their sweep files, relative to the folder they work in (the repository's layout).
LOCAL_SWEEP = Path("jobs") / EXAMPLE_SWEEP


def template(name: str) -> Path:
    """The path of one sbatch template (it may not exist: callers say so)."""
    return Path(str(resources.files("hpc_radr.sbatch_templates") / name))


def default_sweep() -> Path:
    """``jobs/imbalance_regularization.toml`` where the working directory has one (a checkout, or a copy the
    user edits), else the example that ships with the package."""
    if LOCAL_SWEEP.is_file():
        return LOCAL_SWEEP
    return Path(str(resources.files("hpc_radr.jobs") / EXAMPLE_SWEEP))
