"""Options and output shared by `submit`, `resubmit` and `scripts`: where the tasks go and what users are told."""

from __future__ import annotations

import functools
import inspect
import re
import shutil
import sys
import typing
from collections.abc import Callable
from contextlib import nullcontext
from enum import Enum
from typing import Annotated

import typer
from rich.markup import escape

from hpc_radr.cli.output import console, emit_json, errors


class ExecutorName(str, Enum):
    auto = "auto"
    local = "local"
    slurm = "slurm"


Executor = Annotated[ExecutorName, typer.Option(
    "--executor",
    help="local: this machine; slurm: job arrays; auto: slurm when --partition is given or sbatch exists.")]
Workers = Annotated[int, typer.Option("--workers", min=1, help="Local executor: concurrent worker processes.")]
Force = Annotated[bool, typer.Option("--force", help="Retrain runs that already have a result.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Slurm: print the sbatch scripts and chain; submit nothing.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")]

# The Slurm options of `submit`, `resubmit` and `scripts`, declared once: name -> (type with its option, default).
SLURM_OPTIONS: dict[str, tuple[object, object]] = {
    "partition": (Annotated[str | None, typer.Option("--partition", "-p", help="Slurm partition.")], None),
    "gpus": (Annotated[int | None, typer.Option(
        "--gpus-per-task", min=0, help="GPUs per training task [default: 1 on partitions named *gpu*, else 0].")],
        None),
    "cpus": (Annotated[int, typer.Option("--cpus-per-task", min=1, help="CPUs per training task.")], 2),
    "mem_gb": (Annotated[float, typer.Option("--mem-gb", min=0.5, help="Memory per task in GB.")], 4),
    "time_min": (Annotated[int, typer.Option("--time-min", min=1, help="Time limit per task (minutes).")], 60),
    "account": (Annotated[str | None, typer.Option("--account", help="Slurm account.")], None),
    "qos": (Annotated[str | None, typer.Option("--qos", help="Slurm QOS.")], None),
    "throttle": (Annotated[int, typer.Option("--array-parallelism", min=1,
                                             help="At most this many array tasks at once (%N).")], 32),
    "runs_per_task": (Annotated[int, typer.Option("--runs-per-task", min=1,
                                                  help="Runs trained one after another by each array task.")], 1),
    "sbatch": (Annotated[list[str], typer.Option(
        "--sbatch", help="Extra sbatch flag as KEY=VALUE or KEY (e.g. constraint=a100, hold); repeatable.")], []),
    "setup": (Annotated[list[str], typer.Option(
        "--setup", help="Shell line run before each task (module load ..., activate ...); repeatable.")], []),
}


def with_slurm_options(*, runs_per_task: bool = True) -> Callable[[Callable], Callable]:
    """Give a command the Slurm options above and hand them to it as one ``slurm`` argument (SlurmOptions).

    typer reads a command's options from its signature and has no option groups; extending the signature
    here keeps one declaration (and one set of defaults) for every command that submits or writes scripts."""
    names = [name for name in SLURM_OPTIONS if runs_per_task or name != "runs_per_task"]

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def with_options(**values):
            chosen = {name: values.pop(name) for name in names}
            return command(**values, slurm=slurm_options(**chosen))

        # typer needs the options' Annotated types resolved; `slurm` itself is typed for readers only
        with_options.__annotations__ = {k: v for k, v in command.__annotations__.items() if k != "slurm"}
        hints = typing.get_type_hints(with_options, include_extras=True)
        own = inspect.signature(command)
        kept = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own.parameters.values()
                if p.name != "slurm"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=SLURM_OPTIONS[name][0],
                                   default=SLURM_OPTIONS[name][1]) for name in names]
        with_options.__signature__ = own.replace(parameters=kept + added)
        return with_options

    return decorate


def slurm_options(partition: str | None = None, gpus: int | None = None, cpus: int = 2, mem_gb: float = 4,
                  time_min: int = 60, account: str | None = None, qos: str | None = None, throttle: int = 32,
                  runs_per_task: int = 1, sbatch: list[str] = [], setup: list[str] = []):
    """SlurmOptions from the command line's values; a malformed --sbatch flag is refused here (exit 2)."""
    from hpc_radr.executors.slurm import SlurmOptions

    extra: dict[str, str | bool] = {}
    for item in sbatch:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not key or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key):
            errors.print(f"error: --sbatch {item!r}: expected KEY=VALUE or KEY, e.g. constraint=a100 or hold")
            raise typer.Exit(2)
        extra[key] = value if sep else True
    return SlurmOptions(partition=partition, gpus_per_task=gpus, cpus_per_task=cpus, mem_gb=mem_gb,
                        time_min=time_min, account=account, qos=qos, array_parallelism=throttle,
                        runs_per_task=runs_per_task, extra_sbatch=extra, setup=list(setup))


def choose(executor: ExecutorName, partition: str | None) -> ExecutorName:
    if executor is not ExecutorName.auto:
        return executor
    return ExecutorName.slurm if partition or shutil.which("sbatch") else ExecutorName.local


def _progress(quiet: bool):
    """A rich progress display fed by the local executor's (phase, done, total) callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet:
        return nullcontext(None)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console)
    tasks: dict[str, int] = {}

    def feed(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done, total=total)

    class Display:
        def __enter__(self):
            bar.__enter__()
            return feed

        def __exit__(self, *exc) -> None:
            bar.__exit__(*exc)

    return Display()


def run(manifest, executor: ExecutorName, workers: int, force: bool, dry_run: bool, as_json: bool, options) -> None:
    """Hand the remaining work to the chosen executor and report; exit 1 if local runs failed."""
    from hpc_radr.executors.local import run_local
    from hpc_radr.executors.slurm import check_with_sbatch, plan_slurm, submit_jobs
    from hpc_radr.manifest import freeze
    from hpc_radr.storage import check_writable
    from hpc_radr.submission import active_runs, remaining, submission_lock

    if executor is ExecutorName.slurm:
        def planned():
            frozen = manifest.run_dir.manifest.exists()
            work = remaining(manifest, force, exclude=active_runs(manifest) if frozen else set())
            return work, plan_slurm(work, options)

        work, jobs = planned()
        if not dry_run and jobs:
            # a read-only or full run directory would otherwise fail the tasks after they waited in the queue
            check_writable(manifest.run_dir.path)
            check_with_sbatch(jobs)  # Slurm's own verdict before anything is written or submitted
            freeze(manifest)
            with submission_lock(manifest.run_dir):
                work, jobs = planned()  # again under the lock: a concurrent submit may have taken some runs
                submit_jobs(work, jobs, options, force)
        _report_slurm(manifest, work, jobs, dry_run, as_json)
        return
    check_writable(manifest.run_dir.path)  # before anything is written or trained
    freeze(manifest)
    with submission_lock(manifest.run_dir):
        work = remaining(manifest, force)
        if not as_json:
            console.print(f"run directory: {manifest.run_dir.path}\n{len(manifest.configurations)} configurations, "
                          f"{len(manifest.runs)} runs: {len(work.done_runs)} done, {len(work.pending_runs)} to run")
        with _progress(as_json) as feed:
            outcome = run_local(work, workers, force, feed)
    summary = {"run_dir": str(manifest.run_dir.path), "executor": "local", "trained": outcome.trained,
               "failed": outcome.failed, "skipped": len(outcome.skipped), "seconds": round(outcome.seconds, 1),
               "errors": outcome.errors}
    for reason in outcome.errors:  # a full disk or read-only folder stopped workers: say so, not just "failed"
        errors.print(f"[bold red]error:[/] {escape(reason)}", highlight=False)
    if as_json:
        emit_json(summary)
    else:
        console.print(f"trained {len(outcome.trained)}, skipped {len(outcome.skipped)} (already done), "
                      f"failed {len(outcome.failed)} in {summary['seconds']} s")
        if outcome.failed:
            console.print(f"[red]failed runs:[/] {', '.join(outcome.failed)}; see `hpc-radr status`")
        console.print(f"next: hpc-radr collect {manifest.run_dir.path}")
    if outcome.failed:
        raise typer.Exit(1)


def _report_slurm(manifest, work, jobs, dry_run: bool, as_json: bool) -> None:
    if as_json:
        emit_json({"run_dir": str(manifest.run_dir.path), "executor": "slurm", "dry_run": dry_run,
                   "already_done": len(work.done_runs),
                   "jobs": [{"kind": j.kind, "name": j.name, "job_id": j.job_id, "tasks": j.tasks,
                             "after_ok": j.after_ok, "after_any": j.after_any,
                             **({"script": j.script} if dry_run else {})} for j in jobs]})
        return
    if not jobs:
        console.print(f"nothing to submit: {len(work.done_runs)} runs done, the rest queued or running")
        return
    for job in jobs:
        waits = [f"afterok {', '.join(job.after_ok)}"] * bool(job.after_ok) + \
                [f"afterany {', '.join(job.after_any)}"] * bool(job.after_any)
        size = f"array of {len(job.tasks)} tasks" if len(job.tasks) > 1 else "1 task"
        ident = "(dry run)" if dry_run else f"job {job.job_id}"
        console.print(f"{job.name}: {ident}, {size}{'; waits for ' + '; '.join(waits) if waits else ''}")
        if dry_run:
            sys.stdout.write(job.script + "\n")
            sys.stdout.flush()
    if not dry_run:
        console.print(f"submitted into {manifest.run_dir.path}; follow with `hpc-radr status {manifest.run_dir.path}`")


def warn(message: str | None) -> None:
    if message:
        errors.print(f"[yellow]warning:[/] {message}")

