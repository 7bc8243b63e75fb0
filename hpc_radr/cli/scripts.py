"""`hpc-radr scripts`: plain sbatch scripts for a run directory, for users who submit with `sbatch` themselves."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from hpc_radr.cli import dispatch as d
from hpc_radr.cli.output import console, emit_json, fail, user_errors

if TYPE_CHECKING:
    from hpc_radr.job_plan import SlurmOptions


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _cluster_limits(qos: str | None) -> tuple[int, int | None]:
    """(MaxArraySize, jobs the user may still submit) of the cluster here, as `submit` reads them; Slurm's
    defaults where no cluster answers (scripts are often written elsewhere and copied)."""
    from hpc_radr.executors.slurm_site import DEFAULT_MAX_ARRAY_SIZE, SiteUnreadable, query

    try:
        site = query(qos)
    except SiteUnreadable:
        return DEFAULT_MAX_ARRAY_SIZE, None
    return site.max_array_size, site.submit_limit


@d.with_slurm_options()
def scripts(
    run_dir: Path | None = typer.Argument(None, help="Run directory made by `hpc-radr submit` [default: runs/latest]."),
    out: Path = typer.Option(..., "--out", help="Folder to write the scripts into (created if missing)."),
    max_array: int | None = typer.Option(
        None, "--max-array", min=1, help="The cluster's MaxArraySize: larger sweeps are split into several arrays "
        "[default: read with scontrol where it answers, else Slurm's default 1001]."),
    as_json: d.AsJson = False,
    *,
    slurm: SlurmOptions,
) -> None:
    """Write sbatch scripts (clip extraction, training arrays, collect) and submit-all.sh.

    Array task i of train-K.sbatch trains run i + OFFSET of the manifest (one run per task); submit-all.sh
    submits everything in order with the same dependencies as `hpc-radr submit`.
    """
    from hpc_radr.atomic import write_atomic
    from hpc_radr.executors.sbatch_scripts import SUBMIT_ALL, render_scripts
    from hpc_radr.latest import resolve_run_dir
    from hpc_radr.manifest import load

    with user_errors():
        manifest = load(resolve_run_dir(run_dir))
        cluster_max_array, submit_limit = _cluster_limits(slurm.qos)
        rendered = render_scripts(manifest, slurm, max_array=max_array or cluster_max_array,
                                  submit_limit=submit_limit)
    out = out.resolve()
    mask = _umask()
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            mode = (0o777 if name == SUBMIT_ALL else 0o666) & ~mask

            def write(handle, text=text, mode=mode) -> None:
                handle.write(text.encode("utf-8"))
                os.fchmod(handle.fileno(), mode)

            write_atomic(out / name, write)
            written.append(out / name)
    except OSError as err:
        fail(f"--out {out}: {err}")
    stale = sorted(p.name for pattern in ("embed-*.sbatch", "train-*.sbatch") for p in out.glob(pattern)
                   if p.name not in rendered)
    submit = f"bash {shlex.quote(str(out / SUBMIT_ALL))}"
    if as_json:
        emit_json({"run_dir": str(manifest.run_dir.path.resolve()), "out": str(out),
                   "files": [str(p) for p in written], "stale": stale, "submit": submit})
        return
    runs = len(manifest.runs)
    arrays = sum(name.startswith("train-") for name in rendered)
    console.print(f"{manifest.sweep.name}: 1 extraction job, {runs} runs in {arrays} "
                  f"training array{'s' * (arrays != 1)}, 1 collect job; scripts in {out}:", markup=False,
                  highlight=False)
    for path in written:
        console.print(f"  {path.name}", markup=False, highlight=False)
    if stale:
        console.print(f"[yellow]note:[/] left from an earlier render, not used by {SUBMIT_ALL}: "
                      f"{escape(', '.join(stale))}", highlight=False)
    console.print(f"submit with: {submit}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command()(scripts)
