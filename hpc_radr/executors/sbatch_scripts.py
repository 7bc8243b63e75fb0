"""Plain sbatch scripts for a run directory, for users who submit with `sbatch` themselves.

The scripts render the same job plan as ``hpc-radr submit`` (``hpc_radr.job_plan``), through the templates
in ``sbatch_templates/`` (Python ``string.Template``; lines starting with ``##`` are template notes and are
dropped): the extraction job (an array when the sweep has more clips than one shard: task i extracts clips
i x S to i x S + S - 1 of the sweep's clip list), the training arrays (array task i of the array whose first
run is run OFFSET of the manifest trains runs OFFSET + i x K to OFFSET + i x K + K - 1, K runs per task), a
collect job, and ``submit-all.sh`` that submits them in order with the plan's dependencies.

Quoting: every value placed in a script goes through ``shlex.quote``. In ``#SBATCH`` lines, which sbatch
parses itself (it honours single and double quotes, and a backslash escapes the next character even inside
quotes), backslashes are doubled on top of that; in log file names a ``%`` of the run directory is written
``%%`` so that Slurm does not take it for a pattern. Setup lines are user shell code and go in verbatim.
Values with a newline or another control character cannot be put on one line and are refused.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from string import Template

from hpc_radr.bundled import template
from hpc_radr.clip_store import clip_keys, sweep_clips
from hpc_radr.errors import HpcRadrError
from hpc_radr.executors.slurm_site import DEFAULT_MAX_ARRAY_SIZE
from hpc_radr.job_plan import (
    JobKind,
    JobPlan,
    PlanError,
    PlannedJob,
    SlurmOptions,
    check_values,
    clip_range,
    one_line,
    plan_jobs,
)
from hpc_radr.manifest import Manifest
from hpc_radr.submission import largest_unit

SUBMIT_ALL = "submit-all.sh"
_FLAG = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


class TemplateError(HpcRadrError, RuntimeError):
    """The sbatch templates are missing or broken (an installation problem, not the user's input)."""


def default_command() -> list[str]:
    """This interpreter running the package: works on nodes where `hpc-radr` is not on PATH."""
    return [sys.executable, "-m", "hpc_radr"]


def load_template(name: str) -> Template:
    path = template(name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(f"sbatch template {path} is missing: this installation of hpc-radr is incomplete; "
                            "reinstall it (the package ships sbatch_templates/)") from None
    return Template("".join(line for line in text.splitlines(keepends=True) if not line.startswith("##")))


def _fill(name: str, **values: str) -> str:
    try:
        return load_template(name).substitute(**values)
    except (KeyError, ValueError) as err:
        raise TemplateError(f"sbatch template {template(name)} is broken: bad placeholder {err}") from None


def shell(what: str, value: object) -> str:
    """A value as one shell word (refused if it would break the line)."""
    return shlex.quote(one_line(what, str(value)))


def sbatch_value(what: str, value: object) -> str:
    """A value as one word of an ``#SBATCH`` line, which sbatch (not bash) parses."""
    return shell(what, value).replace("\\", "\\\\")


def _log_pattern(run_dir: Path, name: str) -> str:
    """``RUN_DIR/logs/<name>`` as a Slurm file name pattern: a ``%`` of the run directory is written ``%%``."""
    base = str(run_dir)
    if "\\" in base:
        raise PlanError(f"run directory {base!r} contains a backslash: Slurm then ignores the %j/%A/%a "
                          "patterns of the log file names; use a run directory without one")
    return f"{base.replace('%', '%%')}/logs/{name}"


def _sbatch_lines(plan: JobPlan, job: PlannedJob, run_dir: Path, log_name: str) -> str:
    res = job.resources
    pairs: list[tuple[str, object]] = [("job-name", plan.job_name(job))]
    for key, value in (("partition", res.partition), ("account", plan.account), ("qos", plan.qos)):
        if value:
            pairs.append((key, value))
    if job.is_array:
        pairs.append(("array", f"0-{len(job.tasks) - 1}%{job.throttle}"))
    pairs.append(("cpus-per-task", res.cpus))
    if res.gpus:
        pairs.append(("gpus-per-node", res.gpus))
    pairs += [("mem", res.mem), ("time", res.time_min)]
    pairs += [("output", _log_pattern(run_dir, f"{log_name}.out")), ("error", _log_pattern(run_dir, f"{log_name}.err"))]
    lines = [f"#SBATCH --{key}={sbatch_value(f'#SBATCH --{key}', value)}" for key, value in pairs]
    for key, value in plan.extra_sbatch.items():
        if not _FLAG.fullmatch(key):
            raise PlanError(f"extra sbatch flag {key!r}: expected a flag name such as constraint or hold")
        if value is True:
            lines.append(f"#SBATCH --{key}")
        elif value is not False:
            lines.append(f"#SBATCH --{key}={sbatch_value(f'#SBATCH --{key}', value)}")
    return "\n".join(lines)


def _offset(job: PlannedJob, positions: dict[str, int], per_task: int) -> int:
    """The manifest position of the array's first run; its tasks must hold consecutive runs, ``per_task`` each
    (the last one fewer), which is what the template's arithmetic assumes."""
    runs = [positions[run] for run in job.runs]
    if runs != list(range(runs[0], runs[0] + len(runs))) or any(len(t) != per_task for t in job.tasks[:-1]):
        raise PlanError(f"{job.name}: its runs are not consecutive in the manifest; sbatch scripts cannot name them")
    return runs[0]


def _first_clip(job: PlannedJob, per_task: int) -> int:
    """The first clip of the extraction array; its tasks must hold consecutive ranges of ``per_task`` clips
    (the last one fewer), which is what the template's arithmetic assumes."""
    ranges = [clip_range(task) for task in job.tasks]
    if any(stop - start != per_task for start, stop in ranges[:-1]) or \
            any(ranges[k][1] != ranges[k + 1][0] for k in range(len(ranges) - 1)):
        raise PlanError(f"{job.name}: its clip ranges are not consecutive; sbatch scripts cannot name them")
    return ranges[0][0]


def render_scripts(manifest: Manifest, options: SlurmOptions, hpc_radr_command: list[str] | None = None,
                   max_array: int = DEFAULT_MAX_ARRAY_SIZE, submit_limit: int | None = None) -> dict[str, str]:
    """File name -> text: ``embed.sbatch``, ``train-<k>.sbatch`` per array, ``collect.sbatch`` and
    ``submit-all.sh``, in submission order: every clip and every run of the manifest (a task skips clips already
    in the clip store and runs that already have a result)."""
    run_dir = manifest.run_dir.path.resolve()
    check_values(str(run_dir), options)
    clips = len(sweep_clips(manifest, clip_keys(manifest)))
    plan = plan_jobs(manifest.sweep.name, list(range(clips)), clips, [c.run_id for c in manifest.runs], options,
                     max_array, submit_limit, samples=largest_unit(manifest))
    return render_plan(plan, manifest, run_dir, hpc_radr_command)


def script_name(job: PlannedJob) -> str:
    if job.kind is JobKind.embed:
        return "embed.sbatch"
    if job.kind is JobKind.train:
        return f"train-{job.name.split(':')[1]}.sbatch"
    return "collect.sbatch"


def render_plan(plan: JobPlan, manifest: Manifest, run_dir: Path,
                hpc_radr_command: list[str] | None = None) -> dict[str, str]:
    """The plan's jobs as sbatch scripts plus ``submit-all.sh``."""
    command = [str(word) for word in (hpc_radr_command or default_command())]
    common = {"setup": "\n".join(one_line("setup line", line, allowed="\t") for line in plan.setup),
              "run_dir": shell("run directory", run_dir),
              "hpc_radr": " ".join(shell("hpc-radr command word", word) for word in command)}
    positions = {config.run_id: k for k, config in enumerate(manifest.runs)}
    scripts: dict[str, str] = {}
    for job in plan.jobs:
        file = script_name(job)
        if job.kind is JobKind.embed:
            sbatch = _sbatch_lines(plan, job, run_dir, "slurm-embed-%A_%a" if job.is_array else "slurm-embed-%j")
            offset = _first_clip(job, plan.clips_per_task)
            scripts[file] = _fill("embed.sbatch", sbatch=sbatch, offset=shell("clip offset", offset),
                                  per_task=shell("clips per task", plan.clips_per_task), **common)
        elif job.kind is JobKind.train:
            sbatch = _sbatch_lines(plan, job, run_dir, f"slurm-{file.removesuffix('.sbatch')}-%A_%a")
            offset = _offset(job, positions, plan.runs_per_task)
            scripts[file] = _fill("train_array.sbatch", sbatch=sbatch, offset=shell("array offset", offset),
                                  per_task=shell("runs per task", plan.runs_per_task), **common)
        else:
            sbatch = _sbatch_lines(plan, job, run_dir, "slurm-collect-%j")
            scripts[file] = _fill("collect.sbatch", sbatch=sbatch, **common)
    scripts[SUBMIT_ALL] = _submit_all(plan, run_dir)
    return scripts


def _submit_all(plan: JobPlan, run_dir: Path) -> str:
    lines = [
        "#!/usr/bin/env bash",
        "# hpc-radr: submit the sbatch scripts of this folder in order (rendered by `hpc-radr scripts`) for",
        f"# sweep {shell('sweep name', plan.sweep)} in run directory {shell('run directory', run_dir)}.",
        "# The extraction job first; the training arrays start once every extraction task succeeded (afterok;",
        "# kill-on-invalid-dep=yes cancels them if one failed), an array after the one before it in its lane",
        "# (afterany, so the throttle holds for the whole sweep); collect runs when all arrays ended (afterany).",
        "set -euo pipefail",
        'cd -- "$(dirname -- "${BASH_SOURCE[0]}")"',
        "command -v sbatch >/dev/null || { echo 'error: no sbatch here: use a Slurm login node' >&2; exit 1; }",
        f"mkdir -p -- {shell('run directory', run_dir / 'logs')}",
        "trap 'echo \"error: a submission failed; the jobs listed above were submitted\" >&2' ERR",
        "submitted() { printf '%s: job %s\\n' \"$1\" \"$2\"; }",
    ]
    variables = {job.name: f"{job.kind.value}_{k}" for k, job in enumerate(plan.jobs)}  # names may be hostile
    for job in plan.jobs:
        var, file = variables[job.name], script_name(job)
        flags = []
        parts = []
        if job.after_ok:
            parts.append("afterok:" + ":".join(f"${{{variables[n]}}}" for n in job.after_ok))
        if job.after_any:
            parts.append("afterany:" + ":".join(f"${{{variables[n]}}}" for n in job.after_any))
        if parts:
            flags.append(f'--dependency="{",".join(parts)}"')
        if job.after_ok:
            flags.append("--kill-on-invalid-dep=yes")
        words = " ".join(["sbatch", "--parsable", *flags, shell("script", file)])
        lines.append(f"{var}=$({words})")
        lines.append(f'{var}="${{{var}%%;*}}"  # --parsable prints ID or ID;CLUSTER')
        lines.append(f'submitted {shell("script", file)} "${var}"')
    lines.append(f"printf 'follow with: hpc-radr status %q\\n' {shell('run directory', run_dir)}")
    return "\n".join(lines) + "\n"
