"""`hpc-radr status`: counts per state and every failure, with its log."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from hpc_radr.cli.output import console, emit_json, user_errors
from hpc_radr.results import ACTIVE, State


def status(
    run_dir: Path | None = typer.Argument(None, help="Run directory [default: runs/latest]."),
    as_json: bool = typer.Option(False, "--json", help="Per-configuration states as JSON."),
    watch: bool = typer.Option(False, "--watch", help="Refresh until nothing is pending or running (Ctrl-C stops)."),
    interval: float = typer.Option(30.0, "--interval", min=5.0, help="Seconds between refreshes with --watch."),
) -> None:
    """Show the state of every configuration (completed, pending, running, failed, cancelled, timeout,
    out of memory, missing) from the result files and one Slurm query, with each failure's log."""
    from hpc_radr.latest import resolve_run_dir
    from hpc_radr.status import status as compute

    with user_errors():
        path = resolve_run_dir(run_dir).path
        report = compute(path)
    if as_json:
        emit_json(report.as_dict())
        return
    try:
        while True:
            show(report)
            if not watch or not set(ACTIVE) & set(report.counts):
                return
            time.sleep(interval)
            report = compute(path)
            console.clear()
    except KeyboardInterrupt:
        return


# Slurm's words for why a task waits, for people who do not read squeue every day.
WAITING = {
    "Dependency": ", for the jobs before it in the chain",
    "DependencyNeverSatisfied": ": a job it waits for failed, so it will never start",
    "JobArrayTaskLimit": ", the array's --array-parallelism throttle",
    "Resources": ", for free CPUs, GPUs or memory",
    "Priority": ", behind jobs of higher priority",
    "QOSMaxJobsPerUserLimit": ", your QOS's limit on running jobs",
    "AssocMaxJobsLimit": ", your account's limit on running jobs",
    "ReqNodeNotAvail": ", the requested nodes are down or reserved",
    "PartitionTimeLimit": ": --time-min exceeds the partition's limit, it will never start",
    "JobHeldUser": ", held (scontrol release JOBID)",
    "JobHeldAdmin": ", held by an administrator",
    "BeginTime": ", for its start time",
}


def show(report) -> None:
    """Counts per state, the Slurm jobs of the chain and why they wait, then every configuration that needs
    attention."""
    counts = ", ".join(f"{state} {n}" for state, n in report.counts.items())
    console.print(f"{report.run_dir}: {len(report.configurations)} configurations ({report.runs} runs): {counts}")
    if report.clips and report.clips["stored"] < report.clips["total"]:
        console.print(f"clips extracted: {report.clips['stored']} of {report.clips['total']} distinct clips of the "
                      "sweep are in its clip store", markup=False, highlight=False)
    if report.accounting is False:
        console.print("Slurm accounting is off on this cluster: tasks that ended more than MinJobAge ago are known "
                      "from their own files (submitit/) and the result files", markup=False, highlight=False)
    if report.jobs:
        console.print("Slurm jobs, in submission order:")
        name_width = max(len(job.name) for job in report.jobs)
        id_width = max(len(job.job_id) for job in report.jobs)
        for job in report.jobs:
            if job.tasks > 1:
                states = f"{job.tasks} tasks: " + ", ".join(f"{state} {n}" for state, n in job.counts.items())
            else:
                states = ", ".join(job.counts)
            waits = "".join(f" (waiting: {reason}{WAITING.get(reason, '')})" for reason in job.waiting_for)
            console.print(f"  {job.name.ljust(name_width)}  job {job.job_id.ljust(id_width)}  {states}{waits}",
                          markup=False, highlight=False)
    for problem in report.problems:
        console.print(f"[yellow]skipped:[/] {problem}")
    for warning in report.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    failed = [c for c in report.configurations if c.state not in (State.completed, *ACTIVE)]
    if failed:
        table = Table(title="not completed")
        for column in ("index", "run", "state", "Slurm", "error", "log"):
            table.add_column(column, overflow="fold")
        for c in failed:
            slurm = f"{c.job_id} {c.scheduler_state}" if c.job_id and c.scheduler_state else (c.job_id or "")
            table.add_row(str(c.index), c.run_id, c.state, slurm, c.error or "",
                          c.log or "")
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(status)
