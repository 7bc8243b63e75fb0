"""`hpc-radr scripts`: plain sbatch scripts rendered from sbatch_templates/, for a run directory whose path
would run commands if any value were not quoted."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from conftest import write_sweep
from typer.testing import CliRunner

from hpc_radr.bundled import template
from hpc_radr.executors.sbatch_scripts import SUBMIT_ALL, render_scripts
from hpc_radr.job_plan import PlanError, slurm_options
from hpc_radr.manifest import Manifest
from hpc_radr.run_dir import RunDir
from hpc_radr.submission import prepare

# Every character here means something to bash (or to sbatch's #SBATCH parser: quotes, '#', '%' in log names).
HOSTILE = "we ird 'q' $(touch PWNED) `touch PWNED` ; x #1 %j"
SETUP = ["module load cuda/12.2", "source '/opt/radr env/bin/activate' && echo \"setup: $HOME\" # verbatim"]
DEFAULT_COMMAND = [sys.executable, "-m", "hpc_radr"]


@pytest.fixture(scope="module")
def manifest(small_data, tmp_path_factory) -> Manifest:
    """The default small sweep (16 configurations, 12 runs, 3 embedding units) frozen in a hostile folder."""
    folder = tmp_path_factory.mktemp("scripts") / HOSTILE
    folder.mkdir()
    return prepare(write_sweep(folder), folder / "run", small_data, None, dedupe=True, overrides={})


def run_dir_of(manifest: Manifest) -> str:
    return str(manifest.run_dir.path.resolve())


def exec_line(script: str) -> str:
    lines = [line for line in script.splitlines() if line.startswith("exec ")]
    assert len(lines) == 1, script
    return lines[0]


def argv_of(script: str, cwd: Path, **env: str) -> list[str]:
    """The argv the script's command line would run, found by letting bash print it instead of running it."""
    line = "printf '%s\\n' " + exec_line(script)[len("exec "):]
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **env}, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def no_pwned(*roots: Path) -> None:
    """No file made by the `touch PWNED` hidden in the paths: under the given folders, or where tests run."""
    found = [p for root in roots for p in root.rglob("PWNED*")] + [p for p in Path.cwd().glob("PWNED*")]
    assert not found, f"a quoted value was executed: {found}"


def words(text: str) -> str:
    return " ".join(text.split())  # rich wraps long error lines


def test_the_templates_ship_with_the_package():
    for name in ("collect.sbatch", "embed.sbatch", "train_array.sbatch"):
        assert template(name).is_file(), name


def test_every_script_is_valid_bash(manifest, tmp_path):
    scripts = render_scripts(manifest, slurm_options(partition="gpu", setup=SETUP), max_array=5)
    assert list(scripts) == ["embed.sbatch", "train-0.sbatch", "train-1.sbatch", "train-2.sbatch", "collect.sbatch",
                             SUBMIT_ALL]
    for name, text in scripts.items():
        path = tmp_path / name
        path.write_text(text)
        done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, f"{name}: {done.stderr}\n{text}"
        assert text.startswith("#!"), name
        assert not [line for line in text.splitlines() if line.startswith("##")], f"{name}: template notes left"
        if name.endswith(".sbatch"):
            assert "${" not in text, f"{name}: a placeholder was not filled"


def test_the_sweep_is_split_by_max_array(manifest, tmp_path):
    assert len(manifest.runs) == 12
    scripts = render_scripts(manifest, slurm_options(array_parallelism=7), max_array=5)
    trains = sorted(n for n in scripts if n.startswith("train-"))
    assert trains == ["train-0.sbatch", "train-1.sbatch", "train-2.sbatch"]
    covered = []
    # 12 runs, at most 5 per array: three arrays of 4; the sweep's throttle of 7 shared out as 3 + 2 + 2
    for name, (size, offset, throttle) in zip(trains, [(4, 0, 3), (4, 4, 2), (4, 8, 2)], strict=True):
        text = scripts[name]
        assert re.findall(r"^#SBATCH --array=(.*)$", text, re.MULTILINE) == [f"0-{size - 1}%{throttle}"], text
        assert exec_line(text).endswith(f" --first-run $((SLURM_ARRAY_TASK_ID * 1 + {offset})) --run-count 1")
        for task in range(size):  # every task of every array trains a distinct, existing run
            argv = argv_of(text, tmp_path, SLURM_ARRAY_TASK_ID=str(task))
            covered.append(int(argv[argv.index("--first-run") + 1]))
    assert covered == list(range(12))

    one = render_scripts(manifest, slurm_options(), max_array=1001)
    assert [n for n in one if n.startswith("train-")] == ["train-0.sbatch"]
    assert "#SBATCH --array=0-11%12\n" in one["train-0.sbatch"]
    exact = render_scripts(manifest, slurm_options(), max_array=12)
    assert [n for n in exact if n.startswith("train-")] == ["train-0.sbatch"]
    assert "#SBATCH --array=0-11%12\n" in exact["train-0.sbatch"]
    for name in (n for n in one if not n.startswith("train-")):
        assert "--array" not in one[name] or name == SUBMIT_ALL, name
    with pytest.raises(PlanError, match="MaxArraySize 0"):
        render_scripts(manifest, slurm_options(), max_array=0)



def test_the_extraction_array_covers_every_clip_once(manifest, tmp_path):
    clips = len(set(manifest.record.clip_content.values()))
    assert clips == 80  # 18 + 30 training clips (high_medium's are all among them) + 32 test clips
    scripts = render_scripts(manifest, slurm_options(embed_shard_clips=7, array_parallelism=4), max_array=1001)
    text = scripts["embed.sbatch"]
    assert re.findall(r"^#SBATCH --array=(.*)$", text, re.MULTILINE) == ["0-11%4"]  # 80 clips, 7 per task
    assert "/logs/slurm-embed-%A_%a.out" in text
    covered = []
    for task in range(12):
        argv = argv_of(text, tmp_path, SLURM_ARRAY_TASK_ID=str(task))
        first, count = int(argv[argv.index("--first-clip") + 1]), int(argv[argv.index("--clip-count") + 1])
        covered += range(first, min(first + count, clips))
    assert covered == list(range(clips))
    capped = render_scripts(manifest, slurm_options(embed_shard_clips=7), max_array=5)["embed.sbatch"]
    assert "#SBATCH --array=0-4%5\n" in capped and "--clip-count 16" in exec_line(capped)  # 5 shards of 16

def test_several_runs_per_task_cover_every_run_once(manifest, tmp_path):
    scripts = render_scripts(manifest, slurm_options(runs_per_task=5), max_array=2)
    trains = sorted(n for n in scripts if n.startswith("train-"))
    assert trains == ["train-0.sbatch", "train-1.sbatch"]  # 12 runs, 5 per task: 3 tasks, at most 2 per array
    covered = []
    for name in trains:
        size = int(re.findall(r"^#SBATCH --array=0-(\d+)%", scripts[name], re.MULTILINE)[0]) + 1
        for task in range(size):
            argv = argv_of(scripts[name], tmp_path, SLURM_ARRAY_TASK_ID=str(task))
            first, count = int(argv[argv.index("--first-run") + 1]), int(argv[argv.index("--run-count") + 1])
            covered += range(first, min(first + count, 12))
    assert covered == list(range(12))


def test_quoted_values_reach_the_command_unchanged_and_run_nothing(manifest, tmp_path):
    run_dir = run_dir_of(manifest)
    assert "$(touch PWNED)" in run_dir and "`" in run_dir and ";" in run_dir and "'" in run_dir
    odd_python = str(Path(run_dir).parent / "bin $(touch PWNED)" / "python")
    for command in (DEFAULT_COMMAND, [odd_python, "-m", "hpc_radr"]):
        scripts = render_scripts(manifest, slurm_options(), hpc_radr_command=command, max_array=5)
        assert exec_line(scripts["train-0.sbatch"]).startswith(f"exec {shlex.join(command)} run-task ")
        assert argv_of(scripts["train-1.sbatch"], tmp_path, SLURM_ARRAY_TASK_ID="3") == \
            [*command, "run-task", run_dir, "--first-run", "7", "--run-count", "1"]
        assert argv_of(scripts["collect.sbatch"], tmp_path) == [*command, "collect", run_dir]
        assert argv_of(scripts["embed.sbatch"], tmp_path) == \
            [*command, "run-task", run_dir, "--first-clip", "0", "--clip-count", "2000"]
    no_pwned(tmp_path, Path(run_dir).parent)


def test_sbatch_lines_hold_the_options_quoted_for_sbatch(manifest):
    run_dir = run_dir_of(manifest)
    options = slurm_options(partition="gpu", account="bio lab's", qos="normal", mem_gb=6, time_min=90,
                            cpus=3, extra_sbatch={"comment": 'say "hi" # \\ $(x)', "hold": True})
    scripts = render_scripts(manifest, options, max_array=5)
    train = re.findall(r"^#SBATCH (.*)$", scripts["train-0.sbatch"], re.MULTILINE)
    logs = run_dir.replace("%", "%%") + "/logs/slurm-train-0-%A_%a"
    assert train == ["--job-name=small-train", "--partition=gpu", "--account='bio lab'\"'\"'s'", "--qos=normal",
                     "--array=0-3%4", "--cpus-per-task=3", "--gpus-per-node=1", "--mem=6144M", "--time=90",
                     f"--output={shlex.quote(logs + '.out')}", f"--error={shlex.quote(logs + '.err')}",
                     "--comment='say \"hi\" # \\\\ $(x)'", "--hold"]
    embed = re.findall(r"^#SBATCH (.*)$", scripts["embed.sbatch"], re.MULTILINE)
    assert "--cpus-per-task=2" in embed and not any(e.startswith(("--gpus", "--array")) for e in embed)
    assert f"--output={shlex.quote(run_dir.replace('%', '%%') + '/logs/slurm-embed-%j.out')}" in embed


def test_setup_lines_are_placed_verbatim_before_the_command(manifest):
    scripts = render_scripts(manifest, slurm_options(setup=SETUP), max_array=5)
    for name, text in scripts.items():
        if name == SUBMIT_ALL:
            assert SETUP[0] not in text
            continue
        lines = text.splitlines()
        start = lines.index(SETUP[0])
        assert lines[start:start + 2] == SETUP, name
        assert start > max(i for i, line in enumerate(lines) if line.startswith("#SBATCH"))
        assert start < lines.index(exec_line(text))


def test_line_breaking_values_are_refused(manifest):
    with pytest.raises(PlanError, match=r"--partition 'gpu\\n#SBATCH --qos=high'.*control character"):
        render_scripts(manifest, slurm_options(partition="gpu\n#SBATCH --qos=high"))
    with pytest.raises(PlanError, match="--sbatch comment 'a\\\\rb'"):
        render_scripts(manifest, slurm_options(extra_sbatch={"comment": "a\rb"}))
    with pytest.raises(PlanError, match="setup line"):
        render_scripts(manifest, slurm_options(setup=["module load a\nrm -rf x"]))
    bad_dir = Manifest(manifest.record, RunDir(manifest.run_dir.path.parent / "new\nline"))
    with pytest.raises(PlanError, match="new\\\\nline"):
        render_scripts(bad_dir, slurm_options())
    with pytest.raises(PlanError, match="extra sbatch flag"):
        render_scripts(manifest, slurm_options(extra_sbatch={"x\n": True}))


FAKE_SBATCH = """#!/bin/bash
printf '%s\\n' "$*" >> "$SBATCH_LOG"
echo "$(( 100 + $(wc -l < "$SBATCH_LOG") ));hpcradr"
"""


def test_submit_all_chains_the_jobs(manifest, tmp_path):
    out = tmp_path / HOSTILE
    out.mkdir()
    scripts = render_scripts(manifest, slurm_options(), max_array=5)
    for name, text in scripts.items():
        (out / name).write_text(text)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    log = tmp_path / "sbatch.log"
    done = subprocess.run(["bash", str(out / SUBMIT_ALL)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SBATCH_LOG": str(log)})
    assert done.returncode == 0, done.stderr
    after_ok = "--dependency=afterok:101 --kill-on-invalid-dep=yes"
    assert log.read_text().splitlines() == [
        "--parsable embed.sbatch",
        f"--parsable {after_ok} train-0.sbatch", f"--parsable {after_ok} train-1.sbatch",
        f"--parsable {after_ok} train-2.sbatch",
        "--parsable --dependency=afterany:102:103:104 collect.sbatch"]
    assert "collect.sbatch: job 105" in done.stdout
    assert (manifest.run_dir.path / "logs").is_dir()  # Slurm does not create the folder of --output
    no_pwned(tmp_path, manifest.run_dir.path.parent)


def cli_app() -> typer.Typer:
    from hpc_radr.cli import scripts

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A group, so that the command is called by its name as in the real CLI."""

    scripts.register(app)
    return app


def test_the_command_writes_the_scripts(manifest, tmp_path):
    out = tmp_path / "out dir" / HOSTILE
    result = CliRunner().invoke(cli_app(), [
        "scripts", str(manifest.run_dir.path), "--out", str(out), "--max-array", "5", "--partition", "cpu",
        "--array-parallelism", "3", "--setup", SETUP[1], "--sbatch", "constraint=a100", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = sorted(Path(f).name for f in report["files"])
    assert names == sorted(["embed.sbatch", "train-0.sbatch", "train-1.sbatch", "train-2.sbatch", "collect.sbatch",
                            SUBMIT_ALL])
    assert report["submit"] == f"bash {shlex.quote(str(out / SUBMIT_ALL))}"
    assert os.access(out / SUBMIT_ALL, os.X_OK)
    train = (out / "train-2.sbatch").read_text()
    assert "#SBATCH --array=0-3%1\n" in train and "#SBATCH --partition=cpu\n" in train
    assert "#SBATCH --constraint=a100\n" in train and f"\n{SETUP[1]}\n" in train
    assert not list(out.glob(".*.tmp"))

    human = CliRunner().invoke(cli_app(), ["scripts", str(manifest.run_dir.path), "--out", str(out)])
    assert human.exit_code == 0, human.output
    assert "bash " in human.stdout and "train-1.sbatch, train-2.sbatch" in human.stdout  # stale from before

    refused = CliRunner().invoke(cli_app(), ["scripts", str(manifest.run_dir.path), "--out", str(tmp_path / "x"),
                                             "--partition", "gpu\nevil"])
    assert refused.exit_code == 2
    assert "error:" in refused.output and "Traceback" not in refused.output
    assert "--partition 'gpu\\nevil' contains the control character" in words(refused.output)
    assert not (tmp_path / "x").exists()
    missing = CliRunner().invoke(cli_app(), ["scripts", str(tmp_path), "--out", str(tmp_path / "y")])
    assert missing.exit_code == 2 and "no manifest.json" in words(missing.output)


@pytest.mark.slurm
def test_slurm_runs_the_collect_script(manifest, slurm_env, tmp_path):
    """On the real test cluster: sbatch parses the quoted #SBATCH lines, the log lands at the exact path,
    the setup line runs, and the default command (this Python -m hpc_radr) works on the node."""
    options = slurm_options(partition="cpu", setup=['echo "setup ran: $SLURM_JOB_NAME"'],
                           extra_sbatch={"comment": "it's \"quoted\" #1 \\ $(x)"})
    script = tmp_path / "collect.sbatch"
    script.write_text(render_scripts(manifest, options)["collect.sbatch"])
    (manifest.run_dir.path / "logs").mkdir(exist_ok=True)
    done = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, env=slurm_env,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip().split(";")[0]
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=slurm_env).stdout
    assert "Comment=it's \"quoted\" #1 \\ $(x)" in shown and "JobName=small-collect" in shown
    log = manifest.run_dir.path / "logs" / f"slurm-collect-{job}.out"
    deadline = time.monotonic() + 300
    state = ""
    while time.monotonic() < deadline:
        state = subprocess.run(["sacct", "-n", "-X", "-j", job, "-o", "State"], capture_output=True, text=True,
                               env=slurm_env).stdout.strip()
        if state and not state.startswith(("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")):
            break
        time.sleep(2)
    assert state.startswith("COMPLETED"), (state, sorted(p.name for p in (manifest.run_dir.path / "logs").iterdir()))
    assert "setup ran: small-collect" in log.read_text()
    assert (manifest.run_dir.path / "results.csv").exists()
    no_pwned(tmp_path, manifest.run_dir.path.parent)
