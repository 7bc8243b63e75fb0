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
from dataclasses import asdict
from enum import Enum
from typing import Annotated

import typer

from hpc_radr.cli.output import console, emit_json, fail, print_error
from hpc_radr.job_plan import DEFAULT_SHARD_CLIPS, DEFAULT_THROTTLE, DEFAULTS, JobKind, SlurmOptions
from hpc_radr.job_plan import slurm_options as resolve


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

_TRAIN, _EMBED, _COLLECT = DEFAULTS[JobKind.train], DEFAULTS[JobKind.embed], DEFAULTS[JobKind.collect]

# The Slurm options of `submit`, `resubmit` and `scripts`, declared once: name -> (type with its option, default).
# Training tasks take the plain names; extraction and collect jobs (CPU only) have their own.
SLURM_OPTIONS: dict[str, tuple[object, object]] = {
    "partition": (Annotated[str | None, typer.Option("--partition", "-p", help="Slurm partition of the training "
                                                     "tasks (and of the CPU-only jobs unless --cpu-partition).")],
                  None),
    "gpus": (Annotated[int | None, typer.Option(
        "--gpus-per-task", min=0, help="GPUs per training task [default: 1 on partitions named *gpu*, else 0].")],
        None),
    "cpus": (Annotated[int, typer.Option("--cpus-per-task", min=1, help="CPUs per training task.")], _TRAIN.cpus),
    "mem_gb": (Annotated[float | None, typer.Option(
        "--mem-gb", min=0.5, help=f"Memory per training task in GB [default: from the data's size, at least "
        f"{_TRAIN.mem_gb:g}].")], None),
    "time_min": (Annotated[int, typer.Option("--time-min", min=1, help="Time limit per training task (minutes).")],
                 _TRAIN.time_min),
    "cpu_partition": (Annotated[str | None, typer.Option(
        "--cpu-partition", help="Partition of the CPU-only jobs (extraction, collect) [default: --partition].")],
        None),
    "embed_partition": (Annotated[str | None, typer.Option(
        "--embed-partition", help="Partition of the extraction tasks [default: --cpu-partition].")], None),
    "embed_cpus": (Annotated[int, typer.Option("--embed-cpus", min=1,
                                               help="CPUs per extraction task (one extraction worker each).")],
                                                   _EMBED.cpus),
    "embed_mem_gb": (Annotated[float | None, typer.Option(
        "--embed-mem-gb", min=0.5, help=f"Memory per extraction task in GB [default: from its CPUs and clips, at "
        f"least {_EMBED.mem_gb:g}].")], None),
    "embed_time_min": (Annotated[int, typer.Option("--embed-time-min", min=1,
                                                   help="Time limit per extraction task (minutes).")], _EMBED.time_min),
    "embed_shard_clips": (Annotated[int, typer.Option(
        "--embed-shard-clips", min=1, help="Clips per extraction task: a sweep with more distinct clips is "
        "extracted by an array of tasks on Slurm, and by several workers locally.")], DEFAULT_SHARD_CLIPS),
    "collect_partition": (Annotated[str | None, typer.Option(
        "--collect-partition", help="Partition of the collect job [default: --cpu-partition].")], None),
    "collect_cpus": (Annotated[int, typer.Option("--collect-cpus", min=1, help="CPUs of the collect job.")],
        _COLLECT.cpus),
    "collect_mem_gb": (Annotated[float | None, typer.Option(
        "--collect-mem-gb", min=0.5, help=f"Memory of the collect job in GB [default: from the data's size, at "
        f"least {_COLLECT.mem_gb:g}].")], None),
    "collect_time_min": (Annotated[int, typer.Option("--collect-time-min", min=1,
                                                     help="Time limit of the collect job (minutes).")],
                                                         _COLLECT.time_min),
    "account": (Annotated[str | None, typer.Option("--account", help="Slurm account.")], None),
    "qos": (Annotated[str | None, typer.Option("--qos", help="Slurm QOS.")], None),
    "throttle": (Annotated[int, typer.Option("--array-parallelism", min=1,
                                             help="At most this many training tasks at once, over all arrays (and "
                                             "extraction tasks).")],
                 DEFAULT_THROTTLE),
    "runs_per_task": (Annotated[int | None, typer.Option(
        "--runs-per-task", min=1, help="Runs trained one after another by each array task [default: 1, more when "
        "the cluster limits how many jobs you may submit].")], None),
    "sbatch": (Annotated[list[str], typer.Option(
        "--sbatch", help="Extra sbatch flag for every job as KEY=VALUE or KEY (e.g. constraint=a100, hold); "
        "repeatable.")], []),
    "setup": (Annotated[list[str], typer.Option(
        "--setup", help="Shell line run before each task (module load ..., activate ...); repeatable.")], []),
}


def with_slurm_options() -> Callable[[Callable], Callable]:
    """Give a command the Slurm options above and hand them to it as one ``slurm`` argument (SlurmOptions).

    typer reads a command's options from its signature and has no option groups; extending the signature
    here keeps one declaration (and one set of defaults) for every command that submits or writes scripts."""
    names = list(SLURM_OPTIONS)

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


def slurm_options(throttle: int = DEFAULT_THROTTLE, sbatch: list[str] = [], **values) -> SlurmOptions:
    """SlurmOptions from the command line's values; a malformed --sbatch flag is refused here (exit 2)."""
    extra: dict[str, str | bool] = {}
    for item in sbatch:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not key or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key):
            fail(f"--sbatch {item!r}: expected KEY=VALUE or KEY, e.g. constraint=a100 or hold")
        extra[key] = value if sep else True
    setup = list(values.pop("setup", []))
    return resolve(**values, array_parallelism=throttle, extra_sbatch=extra, setup=setup)


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


def run(manifest, executor: ExecutorName, workers: int, force: bool, dry_run: bool, as_json: bool, options,
        estimate=None) -> None:
    """Hand the remaining work to the chosen executor and report; exit 1 if local runs failed. An ``estimate``
    is shown first, and kept in the run directory once something was submitted."""
    from hpc_radr import workflow

    if estimate is not None and not as_json:
        from hpc_radr.cli.cost import print_estimate

        print_estimate(estimate)
    if executor is ExecutorName.slurm:
        outcome = workflow.submit_slurm(manifest, options, force, dry_run)
        if estimate is not None and not dry_run and outcome.job_ids:
            workflow.keep_estimate(manifest, estimate)
        _report_slurm(outcome, as_json, estimate)
        return

    def starting(work) -> None:
        if not as_json:
            console.print(f"run directory: {manifest.run_dir.path}\n{len(manifest.configurations)} configurations, "
                          f"{len(manifest.runs)} runs: {len(work.done_runs)} done, {len(work.pending_runs)} to run")

    shard_clips = options.embed_shard_clips if options else DEFAULT_SHARD_CLIPS
    with _progress(as_json) as feed:
        outcome = workflow.run_local(manifest, workers, force, feed, starting, shard_clips)
    if estimate is not None:
        workflow.keep_estimate(manifest, estimate)
    summary = {"run_dir": str(manifest.run_dir.path), "executor": "local", "trained": outcome.trained,
               "failed": outcome.failed, "skipped": len(outcome.skipped), "seconds": round(outcome.seconds, 1),
               "errors": outcome.errors, **({"estimate": estimate.as_json()} if estimate is not None else {})}
    for reason in outcome.errors:  # a full disk or read-only folder stopped workers: say so, not just "failed"
        print_error(reason)
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


def _report_slurm(outcome, as_json: bool, estimate=None) -> None:
    jobs = outcome.plan.jobs
    if as_json:
        emit_json({"run_dir": str(outcome.run_dir), "executor": "slurm", "dry_run": outcome.dry_run,
                   **({"estimate": estimate.as_json()} if estimate is not None else {}),
                   "already_done": len(outcome.work.done_runs), "runs_per_task": outcome.plan.runs_per_task,
                   "notes": outcome.notes,
                   "jobs": [{"kind": j.kind.value, "name": j.name, "job_id": outcome.job_ids.get(j.name),
                             "tasks": [list(t) for t in j.tasks], "throttle": j.throttle,
                             "resources": asdict(j.resources), "after_ok": list(j.after_ok),
                             "after_any": list(j.after_any),
                             **({"script": outcome.scripts[j.name]} if outcome.dry_run else {})} for j in jobs]})
        return
    if not jobs:
        console.print(f"nothing to submit: {len(outcome.work.done_runs)} runs done, the rest queued or running")
        return
    for job in jobs:
        waits = [f"afterok {', '.join(job.after_ok)}"] * bool(job.after_ok) + \
                [f"afterany {', '.join(job.after_any)}"] * bool(job.after_any)
        size = f"array of {len(job.tasks)} tasks, at most {job.throttle} at once" if job.is_array else "1 task"
        ident = "(dry run)" if outcome.dry_run else f"job {outcome.job_ids[job.name]}"
        console.print(f"{job.name}: {ident}, {size} ({job.resources.describe()})"
                      f"{'; waits for ' + '; '.join(waits) if waits else ''}", markup=False, highlight=False)
        if outcome.dry_run:
            sys.stdout.write(outcome.scripts[job.name] + "\n")
            sys.stdout.flush()
    for note in outcome.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    if not outcome.dry_run:
        console.print(f"submitted into {outcome.run_dir}; follow with `hpc-radr status {outcome.run_dir}`",
                      markup=False, highlight=False)


