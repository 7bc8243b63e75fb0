"""The sweep on clusters unlike ours, each a real Slurm 22.05 started beside the default test cluster.

"lab": a small lab cluster with no accounting (finished jobs leave squeue after MinJobAge and nothing remembers
them), nodes of 2 CPUs with 2 GPUs, a GPU partition whose job_submit.lua rejects jobs that ask for no GPU, and a
MaxArraySize of 4. "qos": accounting on, with a QOS that lets a user submit only a few jobs (array tasks count).
In each, the sweep completes, or nothing is submitted and the message says why and what to change.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import write_sweep
from site_cluster import site_cluster
from test_slurm_submit import ONE_DATASET, cli, job_fields, slurm, wait_until_settled

pytestmark = pytest.mark.slurm

MIN_JOB_AGE_S = 10


@pytest.fixture(scope="module")
def lab(slurm_env):
    with site_cluster("lab", "--no-accounting", "--min-job-age", str(MIN_JOB_AGE_S), "--cpus", "2", "--gpus", "2",
                      "--gpu-partition-needs-gpu", "--max-array-size", "4") as env:
        yield env


def six_runs(folder, name: str):
    """1 dataset x linear at ratios 0.0, 0.5, 1.0 x 2 seeds: 6 configurations, 6 runs, 2 epochs each."""
    return write_sweep(folder, name=name, modes='["linear"]', ratios="[0.0, 0.5, 1.0]", seeds="[1, 2]", epochs=2,
                       datasets=ONE_DATASET)


def nothing_submitted(env, name: str) -> None:
    assert name not in slurm(env, "squeue", "-h", "-t", "all", "-o", "%j")


def test_cpu_only_jobs_that_a_gpu_partition_rejects_are_refused_before_anything(lab, small_data, tmp_path):
    run_dir = tmp_path / "run"
    done = cli(lab, "submit", six_runs(tmp_path, "luarule"), "--data", small_data, "--run-dir", run_dir,
               "--partition", "gpu", check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    message = " ".join(done.stderr.split())
    assert "Slurm rejected embed (partition gpu, 2 CPUs, no GPU" in message
    assert "accepts only jobs that request a GPU" in message  # the site's own words
    assert "--cpu-partition" in message and "nothing was submitted" in message
    assert not run_dir.exists()
    nothing_submitted(lab, "luarule")


def test_a_request_larger_than_the_nodes_names_the_job_and_the_option(lab, small_data, tmp_path):
    run_dir = tmp_path / "run"
    done = cli(lab, "submit", six_runs(tmp_path, "toobig"), "--data", small_data, "--run-dir", run_dir,
               "--partition", "gpu", "--cpu-partition", "cpu", "--cpus-per-task", "4", check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    message = " ".join(done.stderr.split())
    assert "Slurm rejected train:0 (array of 3 tasks, each partition gpu, 4 CPUs, 1 GPU" in message
    assert "Requested node configuration is not available" in message and "--cpus-per-task" in message
    assert not run_dir.exists()
    nothing_submitted(lab, "toobig")


def gone_from_squeue(env, job_ids: list[str], limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while slurm(env, "squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i").strip():
        assert time.monotonic() < deadline, "finished jobs still in squeue past MinJobAge"
        time.sleep(2)


def test_without_accounting_the_sweep_completes_and_the_job_view_stays_right(lab, small_data, tmp_path):
    """Defaults that fit 2-CPU nodes, CPU-only jobs on the CPU partition, two arrays (MaxArraySize 4) that
    together run at most 2 tasks; one task cancelled while queued. The view is checked while Slurm still
    lists the jobs and again after they left squeue, when only the files remain."""
    run_dir = tmp_path / "run"
    out = json.loads(cli(lab, "submit", six_runs(tmp_path, "noacct"), "--data", small_data, "--run-dir", run_dir,
                         "--partition", "gpu", "--cpu-partition", "cpu", "--cpus-per-task", "1",
                         "--array-parallelism", "2", "--embed-shard-clips", "40", "--json").stdout)
    jobs = {job["name"]: job for job in out["jobs"]}
    assert sorted(jobs) == ["collect", "embed", "train:0", "train:1"]
    assert jobs["embed"]["tasks"] == [["0:40"], ["40:74"]]  # 74 clips: 42 of high_medium, 32 of the test set
    assert [len(jobs[n]["tasks"]) for n in ("train:0", "train:1")] == [3, 3]
    assert [job_fields(lab, jobs[n]["job_id"])[0].get("ArrayTaskThrottle") for n in ("train:0", "train:1")] == \
        ["1", "1"]  # the sweep's throttle of 2, shared by the two arrays
    victim = jobs["train:0"]["tasks"][2][0]
    slurm(lab, "scancel", f"{jobs['train:0']['job_id']}_2")  # still queued: the array runs one task at a time

    expected = {"completed": 5, "cancelled": 1}
    report = wait_until_settled(lab, run_dir, expect=expected)
    assert report["accounting"] is False
    assert [c["run_id"] for c in report["configurations"] if c["state"] == "cancelled"] == [victim]

    def job_view() -> dict[str, dict[str, int]]:
        return {job["name"]: job["counts"] for job in json.loads(cli(lab, "status", run_dir, "--json").stdout)["jobs"]}

    deadline = time.monotonic() + 120  # the collect job runs after the arrays
    while job_view()["collect"] != {"completed": 1}:
        assert time.monotonic() < deadline, job_view()
        time.sleep(2)
    right = {"embed": {"completed": 2},
             "train:0": {"completed": 2, "cancelled": 1}, "train:1": {"completed": 3}, "collect": {"completed": 1}}
    assert job_view() == right
    gone_from_squeue(lab, [job["job_id"] for job in jobs.values()])
    after = json.loads(cli(lab, "status", run_dir, "--json").stdout)
    assert after["counts"] == expected
    assert {job["name"]: job["counts"] for job in after["jobs"]} == right  # from the files alone now
    human = cli(lab, "status", run_dir).stdout
    assert "accounting is off" in human and "unknown" not in human

    # a GPU-partition task: TensorFlow's environment carries the GPU Slurm granted
    result = json.loads(next((run_dir / "results").glob("*.json")).read_text())
    granted = result["gpus"]["SLURM_JOB_GPUS"]
    assert granted and result["gpus"]["CUDA_VISIBLE_DEVICES"] == granted
    assert result["gpus"]["trained_on"] == "CPU"  # these GPUs are fake: named in status, collect and the report
    assert any("given a GPU by Slurm but trained on the CPU" in w for w in after["warnings"])

    again = json.loads(cli(lab, "resubmit", run_dir, "--partition", "gpu", "--cpu-partition", "cpu",
                           "--cpus-per-task", "1", "--json").stdout)
    assert [job["tasks"] for job in again["jobs"] if job["kind"] == "train"] == [[[victim]]]
    wait_until_settled(lab, run_dir, expect={"completed": 6})
    collected = json.loads(cli(lab, "collect", run_dir, "--json").stdout)
    assert "unused_gpu" in {w["kind"] for w in collected["warnings"]}
    assert "given a GPU by Slurm but trained on the CPU" in " ".join(cli(lab, "collect", run_dir).stdout.split())


@pytest.fixture(scope="module")
def qos(slurm_env):
    with site_cluster("qos", "--qos-max-submit", "5") as env:
        yield env


def test_a_limit_on_submitted_jobs_is_met_by_packing_runs_into_tasks(qos, small_data, tmp_path):
    sweep = six_runs(tmp_path, "packed")
    refused = cli(qos, "submit", sweep, "--data", small_data, "--run-dir", tmp_path / "refused", "--partition",
                  "gpu", "--qos", "limited", "--runs-per-task", "1", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    message = " ".join(refused.stderr.split())
    assert "--runs-per-task 1 makes 6 training tasks, 8 jobs" in message and "use --runs-per-task 2" in message
    assert not (tmp_path / "refused").exists()
    nothing_submitted(qos, "packed")

    run_dir = tmp_path / "run"
    out = json.loads(cli(qos, "submit", sweep, "--data", small_data, "--run-dir", run_dir, "--partition", "gpu",
                         "--qos", "limited", "--json").stdout)
    assert out["runs_per_task"] == 2 and any("MaxSubmitJobsPerUser" in note for note in out["notes"])
    assert sum(len(job["tasks"]) for job in out["jobs"]) == 5  # the extraction job, 3 tasks of 2 runs, collect
    wait_until_settled(qos, run_dir, expect={"completed": 6})
    deadline = time.monotonic() + 120
    while True:  # the collect job runs after the array; accounting lists it a few seconds late
        view = {job["name"]: job["counts"] for job in json.loads(cli(qos, "status", run_dir, "--json").stdout)["jobs"]}
        if view.get("collect") == {"completed": 1} or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert view == {"embed": {"completed": 1}, "train:0": {"completed": 3}, "collect": {"completed": 1}}

