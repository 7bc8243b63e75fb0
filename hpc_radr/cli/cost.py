"""The estimate of what a sweep will cost, for people: shown by ``plan --estimate`` and before ``submit``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from hpc_radr.cli.output import console
from hpc_radr.estimate import readable_hours as hours

if TYPE_CHECKING:
    from hpc_radr.estimate import Estimate


def print_estimate(found: Estimate) -> None:
    """The estimate as a table per job kind, then the totals, the calibration and its uncertainty."""
    capacity = found.capacity
    where = (f"locally, {capacity.train_lanes} workers" if capacity.executor == "local" else
             f"on Slurm, at most {capacity.train_lanes} training tasks at once, {capacity.train_cpus} CPUs and "
             f"{capacity.train_gpus} GPUs per task, {capacity.runs_per_task} runs per task")
    table = Table(title=f"estimate: {found.runs} runs, {found.clips} clips to extract, {where}")
    for column in ("job kind", "tasks", "CPU-hours used", "core-hours held", "GPU-hours held", "longest task",
                   "phase wall time"):
        table.add_column(column)
    for kind in found.kinds:
        table.add_row(kind.kind, str(kind.tasks), f"{kind.cpu_hours:.3f}", f"{kind.core_hours:.3f}",
                      f"{kind.gpu_hours:.3f}", hours(kind.task_hours_max), hours(kind.wall_hours))
    console.print(table)
    spread = f"+-{found.uncertainty:.0%}"
    lines = [f"total: {found.cpu_hours:.3f} CPU-hours, {found.gpu_hours:.3f} GPU-hours, wall time "
             f"{hours(found.wall_hours)} ({spread}; queue waits not included)",
             f"calibrated by {found.calibration.described}"]
    lines += [f"note: {note}" for note in found.notes]
    for line in lines:
        console.print(line, markup=False, highlight=False)
