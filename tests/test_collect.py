"""collect and status on a mix of good, failed, corrupt and missing runs (from a real trained run directory)."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from hpc_radr.cli import app
from hpc_radr.collect import collect
from hpc_radr.manifest import load
from hpc_radr.run_dir import RunDir
from hpc_radr.status import status

pytestmark = pytest.mark.training


@pytest.fixture()
def mixed_run(trained_run, tmp_path):
    """Copy of the trained run with one run failed, one result corrupt (half-written) and one missing."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy, symlinks=True)
    runs = load(RunDir(copy)).runs
    failed, corrupt, missing = runs[1].run_id, runs[4].run_id, runs[7].run_id
    (copy / "results" / f"{failed}.json").unlink()
    (copy / "failures").mkdir(exist_ok=True)
    (copy / "failures" / f"{failed}.json").write_text(json.dumps(
        {"run_id": failed, "error": "RuntimeError: out of disk\nsecond line", "log": "/tmp/x.log"}))
    whole = (copy / "results" / f"{corrupt}.json").read_text()
    (copy / "results" / f"{corrupt}.json").write_text(whole[: len(whole) // 2])
    (copy / "results" / f"{missing}.json").unlink()
    return copy, failed, corrupt, missing


def test_collect_counts_only_whole_results_and_lists_the_rest(mixed_run):
    run_dir, failed, corrupt, missing = mixed_run
    found = collect(run_dir)
    table = found.table
    assert len(table) == 16
    by_run = table.groupby("run_id")["state"].first()
    assert by_run[failed] == "failed" and by_run[corrupt] == "missing" and by_run[missing] == "missing"
    assert (by_run == "completed").sum() == 12 - 3
    assert any(corrupt in p and "corrupt" in p for p in found.problems)
    assert table.loc[table["state"] != "completed", "auprc"].isna().all()
    assert table.loc[table["state"] == "completed", "auprc"].notna().all()
    assert sorted(found.failed + found.missing) == sorted(table.loc[table["state"] != "completed", "index"])
    on_disk = pd.read_parquet(run_dir / "results.parquet")
    assert len(on_disk) == 16 and list(on_disk.columns) == list(table.columns)
    assert len(pd.read_csv(run_dir / "results.csv")) == 16


def test_summary_over_seeds_matches_the_rows(trained_run, tmp_path):
    found = collect(shutil.copytree(trained_run, tmp_path / "run", symlinks=True))
    summary = found.summary
    assert len(summary) == 8 and (summary["n_seeds"] == 2).all()
    row = summary[(summary.dataset == "high_medium") & (summary.upsampling_mode == "smote")
                  & (summary.upsampling_ratio == 1.0)].iloc[0]
    seeds = found.table[(found.table.dataset == "high_medium") & (found.table.upsampling_mode == "smote")
                        & (found.table.upsampling_ratio == 1.0)]
    assert row.auprc_mean == pytest.approx(seeds.auprc.mean())
    assert row.recall_std == pytest.approx(seeds.recall.std())
    assert (seeds.upsampling_implementation == "fast").all()
    assert (0 < seeds.upsample_seconds).all() and (seeds.upsample_seconds < seeds.fit_seconds).all()


def test_status_reports_each_state_with_the_error(mixed_run):
    run_dir, failed, corrupt, missing = mixed_run
    report = status(run_dir)
    configs = load(RunDir(run_dir)).configurations
    sharing = {run: sum(c.run_id == run for c in configs) for run in (failed, corrupt, missing)}
    assert report.counts == {"completed": 16 - sum(sharing.values()), "failed": sharing[failed],
                             "missing": sharing[corrupt] + sharing[missing]}
    failure = next(c for c in report.configurations if c.run_id == failed)
    assert failure.error == "second line" and failure.log == "/tmp/x.log"
    result = CliRunner().invoke(app, ["status", str(run_dir), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["counts"] == report.counts


def test_collect_cli_prints_summary_and_missing(mixed_run):
    run_dir, *_ = mixed_run
    result = CliRunner().invoke(app, ["collect", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "configurations have results" in result.output and "missing" in result.output


@pytest.mark.parametrize(("command", "prints"), [(["--help"], "Usage:"), (["status"], "completed"),
                                               (["collect"], "configurations have results")])
def test_light_commands_never_import_tensorflow(trained_run, tmp_path, command, prints):
    run_dir = shutil.copytree(trained_run, tmp_path / "run", symlinks=True)
    args = command + ([str(run_dir)] if command != ["--help"] else [])
    code = ("import sys; from hpc_radr.cli import app\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit as done:\n    exit_code = done.code\n"
            "else:\n    exit_code = 'no SystemExit'\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'birdnet_analyzer') if m in sys.modules]\n"
            "print('EXIT', repr(exit_code))\n"
            "print('HEAVY', heavy)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # click ends every command with SystemExit; 0 (None from sys.exit()) is success, anything else an error
    assert "EXIT 0" in done.stdout or "EXIT None" in done.stdout, output
    assert prints in done.stdout, output
    assert "HEAVY []" in done.stdout, output
