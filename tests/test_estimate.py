"""The cost estimate: its model against numbers worked by hand, its sample counts against BirdNET's own, its
calibration from a real trained run directory and from the real probe, and the command's errors."""

import json
import math
import subprocess
import sys

import pytest
from conftest import write_sweep

from hpc_radr.estimate import (
    Calibration,
    Capacity,
    EstimateError,
    RunCost,
    _extraction_stats,
    _makespan,
    calibrate_from_run_dir,
    estimate,
    fit_extraction,
    fit_run_cost,
    samples_per_epoch,
)
from hpc_radr.job_plan import plan_jobs, slurm_options
from hpc_radr.manifest import load
from hpc_radr.results import read_result
from hpc_radr.run_dir import RunDir
from hpc_radr.workflow import slurm_capacity, whole_sweep


def calibration(**changes) -> Calibration:
    values = dict(source="run_dir", described="by hand", clip_cpu_s=0.1, worker_start_cpu_s=1.0,
                  extraction_efficiency=0.5, clip_rate_measured=True, import_s=5.0,
                  run_wall=RunCost(1.0, 0.1, 0.001), run_cpu=RunCost(2.0, 0.1, 0.002), epoch_fraction=0.5,
                  spread=0.0, runs=10, samples_range=(100.0, 1000.0))
    return Calibration(**{**values, **changes})


def planned(small_data, tmp_path, seeds="[1, 2]"):
    from hpc_radr.planning import plan_manifest

    record, _ = plan_manifest(write_sweep(tmp_path, seeds=seeds, epochs=10), small_data, None, True, {})
    return whole_sweep(record)


def test_fit_recovers_the_coefficients_of_exact_runs():
    truth = RunCost(0.7, 0.05, 0.0004)
    epochs, samples = [2, 2, 4, 10, 20], [100, 2000, 2000, 500, 300]
    cost, spread = fit_run_cost(epochs, samples, [truth.seconds(e, s) for e, s in zip(epochs, samples, strict=True)])
    assert cost.a == pytest.approx(truth.a) and cost.b == pytest.approx(truth.b) and cost.c == pytest.approx(truth.c)
    assert spread == pytest.approx(0.0, abs=1e-9)


def test_runs_far_beyond_the_calibrations_sizes_get_the_uncertainty_its_coefficients_give_there():
    """Runs of 250-375 samples with 5% noise pin the cost of such runs, not the cost per sample that dominates
    at ten times the size: the error of the summed seconds grows with the distance, and no fit leaves none."""
    import numpy as np

    rng = np.random.default_rng(0)
    truth = RunCost(1.0, 0.05, 0.0002)
    epochs = rng.choice([6.0, 20.0], 60)
    samples = rng.uniform(250, 375, 60)
    seconds = [truth.seconds(e, s) * (1 + 0.05 * rng.standard_normal()) for e, s in zip(epochs, samples, strict=True)]
    cost, spread = fit_run_cost(epochs, samples, seconds)
    near, far = [(20.0, 300.0)] * 28, [(20.0, 3000.0)] * 28
    near_error = cost.total_error(near) / sum(cost.seconds(e, s) for e, s in near)
    far_error = cost.total_error(far) / sum(cost.seconds(e, s) for e, s in far)
    assert near_error < spread / 2 < far_error / 2
    # the error it states covers the truth there (the truth at 3,000 is what the model is off by)
    miss = abs(sum(cost.seconds(e, s) for e, s in far) - sum(truth.seconds(e, s) for e, s in far))
    assert miss < 3 * cost.total_error(far)
    assert fit_run_cost([2, 2, 4], [10, 40, 40], [1.0, 2.0, 3.0])[0].covariance is None  # as many runs as terms


def test_a_sweep_priced_outside_the_calibrations_sizes_says_so_and_widens_its_uncertainty(small_data, tmp_path):
    work = planned(small_data, tmp_path)
    record, sweep = work.manifest.record, work.manifest.sweep
    runs = [work.manifest.run(r) for r in work.pending_runs]
    capacity = Capacity("local", 2, 1, 0, len(runs), [[150]], 1, 2)
    uncertain = RunCost(2.0, 0.1, 0.002, covariance=((0.01, 0, 0), (0, 1e-4, 0), (0, 0, 1e-6)))
    inside = estimate(record, sweep, calibration(run_cpu=uncertain, samples_range=(1.0, 1e6)), capacity, runs)
    outside = estimate(record, sweep, calibration(run_cpu=uncertain, samples_range=(1e5, 1e6)), capacity, runs)
    assert not any("outside the sizes" in note for note in inside.notes)
    assert any("outside the sizes" in note and "probe" in note for note in outside.notes)
    assert outside.uncertainty == inside.uncertainty > calibration().spread + 0.05  # the error counts either way
    certain = estimate(record, sweep, calibration(samples_range=(1e5, 1e6)), capacity, runs)
    assert certain.uncertainty == pytest.approx(0.05) and not any("outside" in n for n in certain.notes)


def _call(clips, workers, rate, start, efficiency=1.0, compiled=0.0):
    """The statistics of one extraction call whose workers start in ``start`` CPU-seconds each (plus
    ``compiled`` on a machine's first extraction) and then extract at ``rate`` per clip."""
    cpu = clips * rate + workers * (start + compiled)
    return {"clips": clips, "workers": workers, "extract_cpu_s": cpu,
            "extract_s": start + compiled + clips * rate / (efficiency * workers),
            "warm_clips": clips - workers, "warm_clip_cpu_s": (clips - workers) * rate}


def test_extraction_rate_and_start_up_come_apart_in_one_call():
    found = fit_extraction([_call(32, 2, rate=0.03, start=0.9, efficiency=0.8)])
    assert found["clip_cpu_s"] == pytest.approx(0.03) and found["worker_start_cpu_s"] == pytest.approx(0.9)
    assert found["extraction_efficiency"] == pytest.approx(0.8) and found["clip_rate_measured"]


def test_a_first_extraction_that_compiled_does_not_price_every_call():
    calls = [_call(400, 2, 0.03, 0.9, compiled=12.0), _call(400, 2, 0.03, 0.9), _call(100, 2, 0.03, 0.9)]
    found = fit_extraction(calls)
    assert found["clip_cpu_s"] == pytest.approx(0.03) and found["worker_start_cpu_s"] == pytest.approx(0.9)


def test_statistics_without_the_workers_rate_give_the_average_and_say_so():
    old = {k: v for k, v in _call(400, 2, 0.03, 0.9).items() if not k.startswith("warm")}
    found = fit_extraction([old])
    assert found["clip_cpu_s"] == pytest.approx(0.03 + 2 * 0.9 / 400) and found["worker_start_cpu_s"] == 0
    assert not found["clip_rate_measured"]


def test_makespan_lays_tasks_on_the_first_free_lane():
    assert _makespan([3, 1, 1, 1], 2) == 3  # lane 1: 3; lane 2: 1 + 1 + 1
    assert _makespan([1, 1, 1, 1, 1], 2) == 3
    assert _makespan([5], 8) == 5 and _makespan([], 4) == 0


def test_sample_counts_are_birdnets_own(trained_run):
    """For every real run: the samples one epoch fits on and validates on, predicted before training, equal
    the counts BirdNET's split and upsampling gave."""
    manifest = load(RunDir(trained_run))
    for config in manifest.runs:
        record = read_result(manifest.run_dir, config.run_id).record
        counts, unit = record["sample_counts"], manifest.units[config.dataset]
        fit = counts["fit_after_upsampling"]["positive"] + counts["fit_after_upsampling"]["negative"]
        val = counts["validation"]["positive"] + counts["validation"]["negative"]
        assert samples_per_epoch(len(unit.positives), len(unit.negatives), manifest.sweep.training.val_split,
                                 config.upsampling_ratio) == (fit, val), config.run_id


def test_estimate_adds_up_by_hand(small_data, tmp_path):
    work = planned(small_data, tmp_path)
    record, sweep = work.manifest.record, work.manifest.sweep
    cal = calibration()
    runs = [work.manifest.run(r) for r in work.pending_runs]
    capacity = Capacity("slurm", train_lanes=4, train_cpus=2, train_gpus=1, runs_per_task=1,
                        embed_tasks=[[100], [30, 20]], embed_lanes=2, embed_cpus=2)
    found = estimate(record, sweep, cal, capacity, runs)
    epochs = 10 * 0.5
    walls, cpus = [], []
    for config in runs:
        unit = record.units[config.dataset]
        fit, val = samples_per_epoch(len(unit.positives), len(unit.negatives), 0.2, config.upsampling_ratio)
        walls.append(1.0 + epochs * (0.1 + 0.001 * (fit + val)))
        cpus.append(2.0 + epochs * (0.1 + 0.002 * (fit + val)))
    kinds = {k.kind: k for k in found.kinds}
    # 3 calls of 2 workers, each worker starting in 1 CPU-second; 2 tasks importing TensorFlow
    assert kinds["embed"].cpu_hours * 3600 == pytest.approx(150 * 0.1 + 3 * 2 * 1.0 + 2 * 5.0)
    assert kinds["embed"].wall_hours * 3600 == pytest.approx(5.0 + 1.0 + 100 * 0.1 / (0.5 * 2))
    assert kinds["embed"].core_hours * 3600 == pytest.approx(2 * (5.0 + 1.0 + 10.0 + 5.0 + 1.0 + 3.0 + 1.0 + 2.0))
    assert kinds["train"].tasks == len(runs) == 12
    assert kinds["train"].cpu_hours * 3600 == pytest.approx(sum(cpus) + len(runs) * 5.0)
    assert kinds["train"].gpu_hours * 3600 == pytest.approx(sum(walls) + len(runs) * 5.0)
    assert kinds["train"].core_hours == pytest.approx(2 * kinds["train"].gpu_hours)
    assert kinds["train"].wall_hours * 3600 == pytest.approx(_makespan([5.0 + w for w in walls], 4))
    one_lane = estimate(record, sweep, cal, Capacity(**{**capacity.__dict__, "train_lanes": 1}), runs)
    assert {k.kind: k for k in one_lane.kinds}["train"].wall_hours * 3600 == pytest.approx(sum(walls) + 12 * 5.0)
    assert found.cpu_hours == pytest.approx(one_lane.cpu_hours)  # the throttle moves the wall time only
    local = estimate(record, sweep, cal, Capacity("local", 2, 1, 0, len(runs), [[150]], 1, 2), runs)
    train = {k.kind: k for k in local.kinds}["train"]
    assert train.tasks == 2 and train.cpu_hours * 3600 == pytest.approx(sum(cpus) + 2 * 5.0)
    assert train.wall_hours * 3600 == pytest.approx(5.0 + _makespan(walls, 2))
    assert "collect" not in {k.kind for k in local.kinds}


def test_slurm_layout_follows_the_job_plan(small_data, tmp_path):
    """Runs packed into tasks, the throttle and the CPUs come from the same plan `submit` makes."""
    work = planned(small_data, tmp_path)
    cal = calibration()
    options = slurm_options("gpu", runs_per_task=3, array_parallelism=2, embed_shard_clips=20)
    plan = plan_jobs("small", work.missing_clips, work.clip_count, work.pending_runs, options, 1001)
    capacity = slurm_capacity(work, plan, options)
    assert capacity.runs_per_task == 3 and capacity.train_lanes == 2 and capacity.train_gpus == 1
    # every distinct clip once, in shards of 20 (the test set and both datasets share files)
    assert sum(map(sum, capacity.embed_tasks)) == work.clip_count == len(work.missing_clips)
    assert [len(t) for t in capacity.embed_tasks] == [1] * math.ceil(work.clip_count / 20)
    assert capacity.embed_lanes == 2  # the extraction array runs at the throttle too
    found = estimate(work.manifest.record, work.manifest.sweep, cal, capacity,
                     [work.manifest.run(r) for r in work.pending_runs])
    assert {k.kind: k.tasks for k in found.kinds} == {"embed": math.ceil(work.clip_count / 20), "train": 4,
                                                      "collect": 1}
    units = work.manifest.units.values()
    assert work.clip_count < sum(len(u.positives) + len(u.negatives) for u in units)


def test_calibration_from_a_trained_run_directory(trained_run, small_data, tmp_path):
    cal = calibrate_from_run_dir(load(RunDir(trained_run)))
    assert cal.source == "run_dir" and cal.runs == 12
    assert cal.clip_cpu_s > 0 and cal.worker_start_cpu_s >= 0 and 0 < cal.extraction_efficiency <= 1
    assert cal.import_s > 0 and cal.clip_rate_measured
    # the workers told their first clip apart: one per worker at most, and those carried the start-up
    for stats in _extraction_stats(trained_run):
        firsts = stats["clips"] - stats["warm_clips"]
        assert 1 <= firsts <= stats["workers"]
        assert stats["warm_clip_cpu_s"] / stats["warm_clips"] < stats["clip_cpu_s"] / stats["clips"]
    assert 0 < cal.epoch_fraction <= 1
    assert cal.run_wall.seconds(5, 60) > 0 and cal.run_cpu.seconds(5, 60) > 0
    # it predicts its own runs' total to within the spread it states
    manifest = load(RunDir(trained_run))
    measured = predicted = 0.0
    for config in manifest.runs:
        record = read_result(manifest.run_dir, config.run_id).record
        timings, counts = record["timings"], record["sample_counts"]
        samples = sum(counts["fit_after_upsampling"].values()) + sum(counts["validation"].values())
        measured += timings["run_cpu_s"]
        predicted += cal.run_cpu.seconds(record["epochs_run"], samples)
    assert predicted == pytest.approx(measured, rel=max(0.05, cal.spread))


def test_a_run_directory_without_results_cannot_calibrate(small_data, tmp_path):
    from hpc_radr.submission import prepare

    manifest = prepare(write_sweep(tmp_path), tmp_path / "run", small_data, None, dedupe=True, overrides={})
    with pytest.raises(EstimateError, match="no extraction statistics"):
        calibrate_from_run_dir(manifest)


def hpc_radr(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpc_radr", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_plan_estimate_from_a_run_directory_imports_no_tensorflow(trained_run, small_data, tmp_path):
    sweep = write_sweep(tmp_path, epochs=10)
    done = hpc_radr("plan", sweep, "--calibrate-from", trained_run, "--data", small_data, "--partition", "gpu",
                    "--array-parallelism", 4, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["runs"] == 12 and found["capacity"]["train_lanes"] == 4
    assert found["calibration"]["source"] == "run_dir" and found["gpu_hours"] > 0
    assert math.isclose(found["cpu_hours"], sum(k["cpu_hours"] for k in found["kinds"]))
    check = (f"import sys, runpy; sys.argv = ['hpc-radr', 'plan', {str(sweep)!r}, '--calibrate-from', "
             f"{str(trained_run)!r}, '--data', {str(small_data)!r}]\n"
             "try:\n    runpy.run_module('hpc_radr', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('TF', 'tensorflow' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert "estimate: 12 runs" in shown.stdout and shown.stdout.strip().endswith("TF False"), shown.stderr
    assert not list(tmp_path.glob("runs")), "an estimate writes nothing"


def test_plan_estimate_errors_are_one_line(trained_run, small_data, tmp_path):
    sweep = write_sweep(tmp_path)
    for args, words in (
            (["--calibrate-from", tmp_path / "nowhere", "--data", small_data], "nowhere"),
            (["--calibrate-from", trained_run], "data"),  # no --data and no [data].source
            (["--calibrate-from", trained_run, "--data", tmp_path / "no-data"], "no-data")):
        done = hpc_radr("plan", sweep, *args, cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], \
            done.stderr


@pytest.mark.training
def test_the_probe_calibrates_on_the_users_data(small_data, tmp_path):
    """The real probe: it extracts clips and fits BirdNET, and the estimate it gives prices every run."""
    sweep = write_sweep(tmp_path, epochs=10)
    done = hpc_radr("plan", sweep, "--estimate", "--data", small_data, "--executor", "local", "--workers", 2,
                    "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    cal = found["calibration"]
    assert cal["source"] == "probe" and cal["epoch_fraction"] == 1.0 and cal["runs"] == 3
    assert cal["clip_cpu_s"] > 0.005 and cal["import_s"] > 0.5  # a real extraction and a real import
    assert found["runs"] == 12 and found["clips"] == planned(small_data, tmp_path).clip_count
    assert any("upper bound" in note for note in found["notes"])
    assert any("wait for each other" in note for note in found["notes"])  # its fits ran alone; 2 workers will not


def test_dry_run_prints_the_estimate_and_writes_nothing(trained_run, small_data, tmp_path):
    sweep = write_sweep(tmp_path, epochs=10)
    run_dir = tmp_path / "planned"
    done = hpc_radr("submit", sweep, "--data", small_data, "--run-dir", run_dir, "--partition", "gpu", "--dry-run",
                    "--calibrate-from", trained_run, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["dry_run"] and found["estimate"]["runs"] == 12 and found["estimate"]["gpu_hours"] > 0
    assert not run_dir.exists()
    shown = hpc_radr("submit", sweep, "--data", small_data, "--run-dir", run_dir, "--partition", "gpu",
                     "--dry-run", "--calibrate-from", trained_run, cwd=tmp_path)
    assert shown.returncode == 0 and "estimate: 12 runs" in shown.stdout and "GPU-hours" in shown.stdout
    assert not run_dir.exists()


@pytest.mark.training
def test_the_report_sets_the_kept_estimate_against_the_actual_cost(trained_run, small_data, tmp_path):
    sweep = write_sweep(tmp_path, modes='["linear"]', ratios="[1.0]", seeds="[1]", epochs=3,
                        datasets='[[datasets]]\nname = "high_medium"\ntiers = ["high", "medium"]\n')
    run_dir = tmp_path / "run"
    done = hpc_radr("submit", sweep, "--data", small_data, "--run-dir", run_dir, "--executor", "local",
                    "--calibrate-from", trained_run, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    kept = json.loads((run_dir / "estimate.json").read_text())
    assert kept["runs"] == 1 and kept["calibration"]["source"] == "run_dir" and kept["made_at"]
    assert hpc_radr("collect", run_dir, cwd=tmp_path).returncode == 0
    report = json.loads((run_dir / "report" / "report.json").read_text())
    cost = report["provenance"]["cost"]
    assert cost["estimated"]["cpu_hours"] == pytest.approx(kept["cpu_hours"])
    actual = cost["actual"]
    assert actual["runs"] == 1 and actual["processes"] == 1 and actual["total_cpu_hours"] > 0
    assert actual["wall_hours"] > 0
    text = (run_dir / "report" / "report.md").read_text()
    assert "## Cost" in text and "Estimated at submit" in text
