"""`hpc-radr run-task`: one task on a worker (what array scripts and executors run)."""

from __future__ import annotations

from pathlib import Path

import typer

from hpc_radr.cli.output import emit_json, fail, user_errors


def run_task(
    run_dir: Path = typer.Argument(..., help="Run directory made by `hpc-radr submit`."),
    index: list[int] = typer.Option([], "--index", help="Configuration index (0-based); repeatable."),
    run: list[int] = typer.Option([], "--run", help="Position in the manifest's list of unique runs; repeatable."),
    first_run: int | None = typer.Option(None, "--first-run", min=0,
                                         help="Position of the first of --run-count consecutive runs (array scripts)."),
    run_count: int = typer.Option(1, "--run-count", min=1, help="With --first-run: how many runs, up to the last."),
    first_clip: int | None = typer.Option(None, "--first-clip", min=0,
                                          help="Extract instead: position of the first of --clip-count consecutive "
                                               "clips of the sweep's clip list (extraction scripts)."),
    clip_count: int = typer.Option(1, "--clip-count", min=1, help="With --first-clip: how many clips, up to the last."),
    force: bool = typer.Option(False, "--force", help="Retrain even if a result exists."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="TensorFlow threads [default: CPUs given]."),
) -> None:
    """Train the given configurations (or extract clips into the clip store), writing one result file per run."""
    from hpc_radr import runner
    from hpc_radr.manifest import load
    from hpc_radr.run_dir import RunDir, RunDirError

    with user_errors():
        if first_clip is not None:
            emit_json({"embedded": runner.embed(run_dir, [(first_clip, first_clip + clip_count)])})
            return
        manifest = load(RunDir(run_dir))
        run_ids = []
        for i in index:
            if not 0 <= i < len(manifest.configurations):
                raise RunDirError(f"--index {i}: the manifest has configurations 0-{len(manifest.configurations) - 1}")
            run_ids.append(manifest.configurations[i].run_id)
        for k in run:
            if not 0 <= k < len(manifest.runs):
                raise RunDirError(f"--run {k}: the manifest has runs 0-{len(manifest.runs) - 1}")
            run_ids.append(manifest.runs[k].run_id)
        if first_run is not None:
            if first_run >= len(manifest.runs):
                raise RunDirError(f"--first-run {first_run}: the manifest has runs 0-{len(manifest.runs) - 1}")
            run_ids += [c.run_id for c in manifest.runs[first_run:first_run + run_count]]
        if not run_ids:
            raise RunDirError("nothing to do: give --index, --run, --first-run or --first-clip")
        try:
            report = runner.train(run_dir, list(dict.fromkeys(run_ids)), force, threads)
        except runner.TaskFailed as err:
            fail(str(err), code=1)
    emit_json(report.__dict__)


def register(app: typer.Typer) -> None:
    app.command("run-task")(run_task)
