"""Real BirdNET training on small synthetic data: valid results, real seeds, shared runs, reuse of processes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpc_radr.manifest import load
from hpc_radr.results import read_result
from hpc_radr.run_dir import RunDir

pytestmark = pytest.mark.training


def results(run_dir: Path) -> dict[str, dict]:
    manifest = load(RunDir(run_dir))
    return {c.run_id: read_result(manifest.run_dir, c.run_id).record for c in manifest.runs}


def test_every_run_wrote_a_valid_result(trained_run):
    manifest = load(RunDir(trained_run))
    assert len(manifest.configurations) == 16 and len(manifest.runs) == 12
    assert sorted(p.stem for p in (trained_run / "results").glob("*.json")) == sorted(c.run_id for c in manifest.runs)
    for run_id, record in results(trained_run).items():
        assert record is not None, run_id
        test = record["test"]
        for metric in ("auprc", "auroc", "precision", "recall", "f1", "f1_opt", "threshold_opt"):
            assert 0.0 <= test[metric] <= 1.0, (run_id, metric)
        assert test["tp"] + test["fn"] == test["n_positive"] == 12
        assert test["tn"] + test["fp"] == test["n_negative"] == 20
        assert 1 <= record["best_epoch"] <= record["epochs_run"] <= 5
        assert len(record["history"]["val_loss"]) == record["epochs_run"]
        assert record["versions"]["birdnet-analyzer"] == "2.4.0"
        assert record["evaluation_protocol"] == "held_out"
        counts = record["sample_counts"]
        assert counts["fit_before_upsampling"]["positive"] + counts["validation"]["positive"] == \
            counts["dataset"]["positive"]
        model = Path(record["model_file"])
        assert model.is_file() and 0 < model.stat().st_size < 50_000


def test_upsampling_really_adds_positives(trained_run):
    for record in results(trained_run).values():
        counts = record["sample_counts"]
        before, after = counts["fit_before_upsampling"], counts["fit_after_upsampling"]
        ratio = record["configuration"]["upsampling_ratio"]
        assert after["negative"] == before["negative"]
        if ratio == 0.0:
            assert after == before
        else:  # BirdNET raises positives to int(max(pos, neg) * ratio); here negatives outnumber positives
            assert after["positive"] == int(max(before["positive"], before["negative"]) * ratio) > before["positive"]
        upsampled = record["upsampling"]  # the default, fast implementation; never called at ratio 0.0
        assert upsampled["implementation"] == "fast" and upsampled["called"] == (ratio > 0)
        assert upsampled.get("synthetic", 0) == after["positive"] - before["positive"]
        assert (record["timings"]["upsample_s"] > 0) == (ratio > 0)
        assert (record["timings"]["upsample_cpu_s"] > 0) == (ratio > 0)


def test_every_phase_records_process_cpu(trained_run):
    """CPU-seconds per phase beside the wall times, so a benchmark can read them from a result file."""
    for record in results(trained_run).values():
        timings = record["timings"]
        for phase in ("fit", "upsample", "evaluate", "export", "cache_load"):
            assert f"{phase}_s" in timings and timings[f"{phase}_cpu_s"] >= 0
        assert timings["upsample_cpu_s"] <= timings["fit_cpu_s"] <= timings["run_cpu_s"]


def test_ratio_zero_configurations_share_one_run(trained_run):
    manifest = load(RunDir(trained_run))
    zero = [c for c in manifest.configurations if c.upsampling_ratio == 0.0]
    linear = {(c.dataset, c.seed): c.run_id for c in zero if c.upsampling_mode == "linear"}
    smote = {(c.dataset, c.seed): c.run_id for c in zero if c.upsampling_mode == "smote"}
    assert linear == smote
    record = results(trained_run)[next(iter(linear.values()))]
    assert len(record["shared_by"]) == 2


def test_seeds_change_the_result(trained_run):
    records = results(trained_run)
    one = records["high_medium_low__smote-1__bce__seed1"]
    two = records["high_medium_low__smote-1__bce__seed2"]
    assert one["history"]["loss"] != two["history"]["loss"]


def test_same_seed_in_a_fresh_process_gives_identical_results(trained_run, tmp_path):
    """The trained_run fixture trained every run in one shared process; here one run gets its own."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy, symlinks=True)
    manifest = load(RunDir(copy))
    position = len(manifest.runs) - 1  # trained last in the shared process
    run_id = manifest.runs[position].run_id
    before = json.loads((copy / "results" / f"{run_id}.json").read_text())
    done = subprocess.run([sys.executable, "-m", "hpc_radr", "run-task", str(copy), "--run", str(position), "--force"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = json.loads((copy / "results" / f"{run_id}.json").read_text())
    assert after["environment"]["pid"] != before["environment"]["pid"]
    assert after["test"] == before["test"]
    assert after["history"] == before["history"]
    assert after["sample_counts"] == before["sample_counts"]


def test_finished_runs_are_skipped_unless_forced(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy, symlinks=True)
    from hpc_radr import runner

    manifest = load(RunDir(copy))
    run_id = manifest.runs[0].run_id
    stamp = (copy / "results" / f"{run_id}.json").stat().st_mtime_ns
    report = runner.train(copy, [run_id])
    assert report.skipped == [run_id] and not report.trained
    assert (copy / "results" / f"{run_id}.json").stat().st_mtime_ns == stamp
