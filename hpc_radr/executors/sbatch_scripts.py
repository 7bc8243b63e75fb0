"""Plain sbatch scripts for a run directory, for users who submit with `sbatch` themselves.

The scripts are rendered from the templates in ``sbatch_templates/`` (Python ``string.Template``; lines
starting with ``##`` are template notes and are dropped): one embedding job per unit, training arrays of at
most ``max_array`` tasks (array task i of the array starting at OFFSET trains run i + OFFSET of the
manifest), a collect job, and ``submit-all.sh`` that submits them in order with the same chain as
``hpc-radr submit``: arrays ``afterok`` on every embedding job with ``kill-on-invalid-dep=yes``, collect
``afterany`` on every array.

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

import hpc_radr
from hpc_radr.executors.slurm import SlurmOptions, _mem, one_line
from hpc_radr.manifest import Manifest, RunDirError
from hpc_radr.sweep import slug

DEFAULT_MAX_ARRAY = 1001  # Slurm's default MaxArraySize
SUBMIT_ALL = "submit-all.sh"
TEMPLATES = ("embed.sbatch", "train_array.sbatch", "collect.sbatch")
_FLAG = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


class TemplateError(RuntimeError):
    """The sbatch templates are missing or broken (an installation problem, not the user's input)."""


def default_command() -> list[str]:
    """This interpreter running the package: works on nodes where `hpc-radr` is not on PATH."""
    return [sys.executable, "-m", "hpc_radr"]


def templates_dir() -> Path:
    return Path(hpc_radr.__file__).resolve().parents[1] / "sbatch_templates"


def load_template(name: str) -> Template:
    path = templates_dir() / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(f"sbatch template {path} is missing: hpc-radr must run from its source checkout "
                            f"(an editable install), which holds sbatch_templates/{{{','.join(TEMPLATES)}}}"
                            ) from None
    return Template("".join(line for line in text.splitlines(keepends=True) if not line.startswith("##")))


def _fill(name: str, **values: str) -> str:
    try:
        return load_template(name).substitute(**values)
    except (KeyError, ValueError) as err:
        raise TemplateError(f"sbatch template {templates_dir() / name} is broken: bad placeholder {err}") from None


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
        raise RunDirError(f"run directory {base!r} contains a backslash: Slurm then ignores the %j/%A/%a "
                          "patterns of the log file names; use a run directory without one")
    return f"{base.replace('%', '%%')}/logs/{name}"


def _sbatch_lines(options: SlurmOptions, run_dir: Path, job_name: str, log_name: str, resources: dict) -> str:
    pairs: list[tuple[str, object]] = [("job-name", job_name)]
    for key, value in (("partition", options.partition), ("account", options.account), ("qos", options.qos)):
        if value:
            pairs.append((key, value))
    pairs += list(resources.items())
    pairs += [("output", _log_pattern(run_dir, f"{log_name}.out")), ("error", _log_pattern(run_dir, f"{log_name}.err"))]
    lines = [f"#SBATCH --{key}={sbatch_value(f'#SBATCH --{key}', value)}" for key, value in pairs]
    for key, value in options.extra_sbatch.items():
        if not _FLAG.fullmatch(key):
            raise RunDirError(f"extra sbatch flag {key!r}: expected a flag name such as constraint or hold")
        if value is True:
            lines.append(f"#SBATCH --{key}")
        elif value is not False:
            lines.append(f"#SBATCH --{key}={sbatch_value(f'#SBATCH --{key}', value)}")
    return "\n".join(lines)


def _setup_lines(options: SlurmOptions) -> str:
    return "\n".join(one_line("setup line", line, allowed="\t") for line in options.setup)


def array_chunks(n_runs: int, max_array: int) -> list[tuple[int, int]]:
    """(offset, size) of each training array: at most ``max_array`` tasks (indices 0..max_array-1) each."""
    if max_array < 1:
        raise RunDirError(f"max_array {max_array}: must be at least 1 (the cluster's MaxArraySize)")
    return [(start, min(max_array, n_runs - start)) for start in range(0, n_runs, max_array)]


def render_scripts(manifest: Manifest, options: SlurmOptions, hpc_radr_command: list[str] | None = None,
                   max_array: int = DEFAULT_MAX_ARRAY) -> dict[str, str]:
    """File name -> text: ``embed-<unit>.sbatch`` per unit, ``train-<k>.sbatch`` per array, ``collect.sbatch``
    and ``submit-all.sh``, in submission order."""
    if options.runs_per_task != 1:
        raise RunDirError("runs per task: the sbatch scripts train one run per array task; "
                          "use `hpc-radr submit` to group runs")
    if options.array_parallelism < 1:
        raise RunDirError(f"array parallelism {options.array_parallelism}: must be at least 1")
    run_dir = manifest.run_dir.path.resolve()
    name = manifest.sweep.name
    command = [str(word) for word in (hpc_radr_command or default_command())]
    common = {"setup": _setup_lines(options), "run_dir": shell("run directory", run_dir),
              "hpc_radr": " ".join(shell("hpc-radr command word", word) for word in command)}
    scripts: dict[str, str] = {}

    embeds = []
    for unit in manifest.units:
        file = f"embed-{slug(unit)}.sbatch"
        embed_resources = {"cpus-per-task": options.embed_cpus, "mem": _mem(max(options.mem_gb, 4)),
                           "time": options.embed_time_min}
        sbatch = _sbatch_lines(options, run_dir, f"{name}-embed", f"slurm-embed-{slug(unit)}-%j",
                               embed_resources)
        scripts[file] = _fill("embed.sbatch", sbatch=sbatch, unit=shell("embedding unit", unit), **common)
        embeds.append(file)

    arrays = []
    for part, (offset, size) in enumerate(array_chunks(len(manifest.runs), max_array)):
        file = f"train-{part}.sbatch"
        resources: dict[str, object] = {"array": f"0-{size - 1}%{options.array_parallelism}",
                                        "cpus-per-task": options.cpus_per_task}
        if options.gpus:
            resources["gpus-per-node"] = options.gpus
        resources.update({"mem": _mem(options.mem_gb), "time": options.time_min})
        sbatch = _sbatch_lines(options, run_dir, f"{name}-train", f"slurm-train-{part}-%A_%a", resources)
        scripts[file] = _fill("train_array.sbatch", sbatch=sbatch, offset=shell("array offset", offset), **common)
        arrays.append(file)

    sbatch = _sbatch_lines(options, run_dir, f"{name}-collect", "slurm-collect-%j",
                           {"cpus-per-task": 1, "mem": _mem(2), "time": 30})
    scripts["collect.sbatch"] = _fill("collect.sbatch", sbatch=sbatch, **common)
    scripts[SUBMIT_ALL] = _submit_all(name, run_dir, embeds, arrays)
    return scripts


def _submit_all(name: str, run_dir: Path, embeds: list[str], arrays: list[str]) -> str:
    lines = [
        "#!/usr/bin/env bash",
        "# hpc-radr: submit the sbatch scripts of this folder in order (rendered by `hpc-radr scripts`) for",
        f"# sweep {shell('sweep name', name)} in run directory {shell('run directory', run_dir)}.",
        "# Embedding jobs first; the training arrays start once every embedding job succeeded (afterok;",
        "# kill-on-invalid-dep=yes cancels them if one failed); collect runs when all arrays ended (afterany).",
        "set -euo pipefail",
        'cd -- "$(dirname -- "${BASH_SOURCE[0]}")"',
        "command -v sbatch >/dev/null || { echo 'error: no sbatch here: use a Slurm login node' >&2; exit 1; }",
        f"mkdir -p -- {shell('run directory', run_dir / 'logs')}",
        "trap 'echo \"error: a submission failed; the jobs listed above were submitted\" >&2' ERR",
        "submitted() { printf '%s: job %s\\n' \"$1\" \"$2\"; }",
    ]

    def submit(var: str, file: str, flags: list[str]) -> None:
        words = " ".join(["sbatch", "--parsable", *flags, shell("script", file)])
        lines.append(f"{var}=$({words})")
        lines.append(f'{var}="${{{var}%%;*}}"  # --parsable prints ID or ID;CLUSTER')
        lines.append(f'submitted {shell("script", file)} "${var}"')

    for k, file in enumerate(embeds):
        submit(f"embed_{k}", file, [])
    array_flags = []
    if embeds:
        ids = ":".join(f"${{embed_{k}}}" for k in range(len(embeds)))
        array_flags = [f'--dependency="afterok:{ids}"', "--kill-on-invalid-dep=yes"]
    for k, file in enumerate(arrays):
        submit(f"train_{k}", file, array_flags)
    collect_flags = []
    if arrays:
        ids = ":".join(f"${{train_{k}}}" for k in range(len(arrays)))
        collect_flags = [f'--dependency="afterany:{ids}"']
    submit("collect", "collect.sbatch", collect_flags)
    lines.append(f"printf 'follow with: hpc-radr status %q\\n' {shell('run directory', run_dir)}")
    return "\n".join(lines) + "\n"
