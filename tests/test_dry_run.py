"""`--dry-run` renders exactly what submitit would submit, pinned by a golden file, and creates nothing."""

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import write_sweep
from typer.testing import CliRunner

from hpc_radr.cli import app
from hpc_radr.executors.slurm_site import Site
from hpc_radr.job_plan import slurm_options
from hpc_radr.submission import prepare
from hpc_radr.workflow import submit_slurm

GOLDEN = Path(__file__).parent / "golden" / "dry_run.sbatch"


def render_all(small_data, folder: Path) -> str:
    sweep = write_sweep(folder, name="golden", modes='["linear", "smote"]', ratios="[0.0, 1.0]", seeds="[7]")
    run_dir = folder / "run"
    manifest = prepare(sweep, run_dir, small_data, None, dedupe=True, overrides={}, write=False)
    assert not run_dir.exists()
    options = slurm_options(partition="gpu", cpu_partition="cpu", account="bio lab's", qos="normal",
                            array_parallelism=4, extra_sbatch={"constraint": "a100|v100", "hold": True},
                            setup=["module load cuda/12.2", "source '/opt/envs/radr env/bin/activate'"])
    outcome = submit_slurm(manifest, options, dry_run=True, site=Site(max_array_size=5, accounting=True,
                                                                      submit_limit=None))
    assert not run_dir.exists()
    text = "\n".join(f"### {job.name} ({len(job.tasks)} tasks) after_ok={list(job.after_ok)} "
                     f"after_any={list(job.after_any)}\n{outcome.scripts[job.name]}" for job in outcome.plan.jobs)
    return text.replace(str(run_dir.resolve()), "<RUN_DIR>").replace(sys.executable, "<PYTHON>")


def test_dry_run_matches_the_golden_file(small_data, tmp_path):
    text = render_all(small_data, tmp_path)
    if os.environ.get("HPC_RADR_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "rerun with HPC_RADR_UPDATE_GOLDEN=1 if the change is intended"


def test_golden_chain_shape(small_data, tmp_path):
    text = render_all(small_data, tmp_path)
    # 2 datasets x (1 shared ratio-0 run + 2 modes at ratio 1.0) x focal off x 1 seed = 6 runs, MaxArraySize 5:
    # two arrays of 3, sharing the sweep's throttle of 4 (2 each), so at most 4 tasks run at once
    assert text.count("#SBATCH --array=0-2%2") == 2
    assert text.count("### embed (1 tasks)") == 1 and text.count("### train:") == 2  # all 80 clips in one shard
    # CPU-only jobs go to the CPU partition without a GPU; training to the GPU partition with one
    embeds = text.split("### train:0")[0]
    assert embeds.count("#SBATCH --partition=cpu") == 1 and "gpus-per-node" not in embeds
    assert text.split("### train:1")[1].split("### collect")[0].count("#SBATCH --gpus-per-node=1") == 1
    assert "#SBATCH --account='bio lab'\"'\"'s'" in text
    assert "#SBATCH --constraint='a100|v100'" in text and "#SBATCH --hold\n" in text
    assert "source '/opt/envs/radr env/bin/activate'" in text


@pytest.mark.parametrize(("args", "expected"), [
    (["--partition", "gpu\n#SBATCH --qos=high"], "--partition 'gpu\\n#SBATCH --qos=high' contains the control"),
    (["--setup", "module load cuda\ntouch PWNED"], "give each line its own --setup"),
    (["--sbatch", "comment=a\rb"], "--sbatch comment 'a\\rb' contains the control character"),
    (["--account", "lab\x1b[2J"], "--account 'lab\\x1b[2J' contains the control character"),
    (["--run-dir-suffix", "new\nline"], "contains the control character '\\n'"),
    (["--run-dir-suffix", "back\\slash"], "contains a backslash"),
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_values_that_would_break_a_job_script_are_refused_before_anything(small_data, tmp_path, args, expected,
                                                                           dry_run):
    """submitit writes option values into #SBATCH lines as they are: a newline would end the line and turn
    the rest into a directive or a command. Refused with exit 2, whether or not it is a dry run, and
    before a run directory, a manifest or a job exists (no Slurm needed to see it)."""
    sweep = write_sweep(tmp_path, name="refused", modes='["linear"]', ratios="[0.0]", seeds="[1]")
    run_dir = tmp_path / "runs" / "r"
    if args[0] == "--run-dir-suffix":
        run_dir, args = tmp_path / "runs" / args[1], []
    command = ["submit", str(sweep), "--data", str(small_data), "--run-dir", str(run_dir), "--executor", "slurm",
               *(["--partition", "gpu"] if "--partition" not in args else []), *args,
               *(["--dry-run"] if dry_run else [])]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert not (tmp_path / "runs").exists() and not list(tmp_path.rglob("PWNED"))


def test_a_dry_run_without_a_cluster_shows_the_chain_with_slurms_defaults(small_data, tmp_path, monkeypatch):
    """A laptop has no Slurm: the chain is still shown (a real submit there is refused), nothing is created."""
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-such-slurm.conf"))
    sweep = write_sweep(tmp_path, name="laptop", modes='["linear"]', ratios="[0.0, 1.0]", seeds="[1]")
    run_dir = tmp_path / "runs" / "r"
    common = ["submit", str(sweep), "--data", str(small_data), "--run-dir", str(run_dir), "--executor", "slurm",
              "--partition", "gpu", "--cpu-partition", "cpu"]
    shown = CliRunner().invoke(app, [*common, "--dry-run", "--json"])
    assert shown.exit_code == 0, shown.output
    out = json.loads(shown.stdout)
    assert [job["name"] for job in out["jobs"]][-1] == "collect" and out["dry_run"] is True
    assert any("planned with Slurm's defaults (MaxArraySize 1001" in note for note in out["notes"])
    refused = CliRunner().invoke(app, common)
    said = " ".join(refused.stderr.split())
    assert refused.exit_code == 2
    assert "cannot read the cluster's configuration" in said or "scontrol not found" in said
    assert not (tmp_path / "runs").exists()
