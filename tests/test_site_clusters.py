"""Site rules of real clusters, each on its own variant of the test cluster (tests/site_cluster.py).

Every test starts (through a class-scoped fixture, shared by the tests of one rule) a second cluster with one
`scripts/slurm-cluster start` option, checks with plain sbatch / squeue / sacct that the rule is in force and that
an ordinary job still runs there, and stops it again. The default test cluster (HPC_RADR_SLURM_ENV, through the
`slurm_env` fixture of conftest.py) must run: it is the guard (skip without it, fail with HPC_RADR_REQUIRE_SLURM),
and one test checks that both clusters work side by side.

Polls are bounded loops; no test asserts how long anything takes.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from site_cluster import SCRIPT, site_cluster, state_dir

pytestmark = pytest.mark.slurm

COMMAND_TIMEOUT_S = 60
JOB_TIMEOUT_S = 90
PURGE_TIMEOUT_S = 90
POLL_S = 0.2

GPU_RULE_MESSAGE = ("partition gpu accepts only jobs that request a GPU (--gres=gpu:N or --gpus-per-node=N); "
                    "use a CPU partition for CPU-only jobs")
NODE_TOO_SMALL = "Requested node configuration is not available"
QOS_SUBMIT_LIMIT = "QOSMaxSubmitJobPerUserLimit"
QOS_POLICY = "Job violates accounting/QOS policy"
ACCOUNTING_DISABLED = "Slurm accounting storage is disabled"

# squeue states after which a job does not change any more.
FINISHED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
            "PREEMPTED", "TIMEOUT"}


# ------------------------------------------------------------------ helpers --
def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run a Slurm client command against the cluster of `env`; the caller checks the exit code."""
    return subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                          stdin=subprocess.DEVNULL)


def ok(env: dict[str, str], *args: str) -> str:
    """Run a command that must succeed; its stdout."""
    proc = run(env, *args)
    assert proc.returncode == 0, f"{' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()}"
    return proc.stdout


def submit(env: dict[str, str], *args: str) -> str:
    """sbatch that must be accepted; the job id."""
    return ok(env, "sbatch", "--parsable", *args).strip().split(";")[0]


def refused(env: dict[str, str], *args: str) -> str:
    """sbatch that must be refused; what it printed."""
    proc = run(env, "sbatch", *args)
    assert proc.returncode != 0, f"sbatch {' '.join(args)} was accepted: {proc.stdout.strip()}"
    return proc.stdout + proc.stderr


def config_value(env: dict[str, str], key: str) -> str:
    """One value of `scontrol show config` (what slurmctld actually uses)."""
    for line in ok(env, "scontrol", "show", "config").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    raise AssertionError(f"scontrol show config has no {key}")


def job_states(env: dict[str, str], job_id: str) -> list[str] | None:
    """The squeue states of a job (one per array task), or None once slurmctld has forgotten it."""
    proc = run(env, "squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T")
    if proc.returncode != 0:
        assert "Invalid job id" in proc.stderr, proc.stderr
        return None
    return proc.stdout.split()


def wait_finished(env: dict[str, str], job_id: str, tasks: int = 1) -> list[str]:
    """Poll squeue until all `tasks` tasks of the job have finished; their states."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    states: list[str] | None = []
    while time.monotonic() < deadline:
        states = job_states(env, job_id)
        assert states is not None, f"job {job_id} left squeue before it was seen finished"
        if len(states) == tasks and all(s in FINISHED for s in states):
            return states
        time.sleep(POLL_S)
    pytest.fail(f"job {job_id} not finished after {JOB_TIMEOUT_S} s: {states}")


def run_job(env: dict[str, str], tmp: Path, *args: str, body: str = "true") -> tuple[str, str]:
    """Submit an ordinary job that runs `body`, wait until it finished, check that it COMPLETED and wrote its
    output; (job id, that output)."""
    marker = f"site-rule-{uuid.uuid4().hex[:8]}"
    job_id = submit(env, "-o", str(tmp / f"{marker}-%j.out"), *args, "--wrap", f"echo {marker}; {body}")
    assert wait_finished(env, job_id) == ["COMPLETED"]
    out = tmp / f"{marker}-{job_id}.out"
    assert out.is_file(), f"job {job_id} wrote no {out}"
    text = out.read_text()
    assert marker in text
    return job_id, text


# --------------------------------------------- the two clusters side by side --
def test_two_clusters_side_by_side(slurm_env, tmp_path):
    """Several clusters on one machine: a variant on its own state dir and ports runs beside the default one,
    both run jobs, and stopping the variant leaves the default cluster working."""
    with site_cluster("rule-pair", "--no-accounting") as env:
        assert env["SLURM_CONF"] != slurm_env["SLURM_CONF"]
        _, variant_job = run_job(env, tmp_path, "-p", "cpu", body="echo conf=$SLURM_CONF")
        _, default_job = run_job(slurm_env, tmp_path, "-p", "cpu", body="echo conf=$SLURM_CONF")
        assert f"conf={env['SLURM_CONF']}" in variant_job
        assert f"conf={slurm_env['SLURM_CONF']}" in default_job
    status = subprocess.run([str(SCRIPT), "status"], env={**env, "SLURM_CONF": ""}, capture_output=True,
                            text=True, timeout=COMMAND_TIMEOUT_S)
    assert status.returncode != 0 and "slurmctld  not running" in status.stdout, status.stdout
    run_job(slurm_env, tmp_path, "-p", "cpu")


# ------------------------------------------------- --no-accounting, --min-job-age --
@pytest.fixture(scope="class")
def noacct(slurm_env) -> Iterator[dict[str, str]]:
    """The variant with --no-accounting --min-job-age 2 (for the tests of TestNoAccounting)."""
    with site_cluster("rule-noacct", "--no-accounting", "--min-job-age", "2") as env:
        yield env


@pytest.fixture(scope="class")
def finished_job(noacct, tmp_path_factory) -> tuple[str, str]:
    """One ordinary job run to completion on the cluster without accounting: (job id, its output)."""
    return run_job(noacct, tmp_path_factory.mktemp("noacct"), body="echo ran")


class TestNoAccounting:
    """Site rules `--no-accounting` (AccountingStorageType=accounting_storage/none) and `--min-job-age 2`."""

    def test_no_accounting_sacct_disabled(self, noacct):
        """--no-accounting: sacct refuses with 'Slurm accounting storage is disabled'."""
        assert config_value(noacct, "AccountingStorageType") == "accounting_storage/none"
        proc = run(noacct, "sacct", "-X")
        assert proc.returncode != 0
        assert ACCOUNTING_DISABLED in proc.stdout + proc.stderr
        assert not (state_dir("rule-noacct") / "slurmdbd.conf").exists()

    def test_no_accounting_job_still_runs(self, finished_job):
        """--no-accounting: an ordinary job runs and completes (its state comes from squeue, not sacct)."""
        _, output = finished_job
        assert "ran" in output

    def test_min_job_age_finished_job_leaves_squeue(self, noacct, finished_job):
        """--min-job-age 2: MinJobAge is 2 s, and a finished job leaves `squeue -j` soon after (and is then
        forgotten: without accounting nothing remembers it)."""
        assert config_value(noacct, "MinJobAge") == "2 sec"
        job_id, _ = finished_job
        deadline = time.monotonic() + PURGE_TIMEOUT_S
        while job_states(noacct, job_id) is not None:
            assert time.monotonic() < deadline, f"job {job_id} still in squeue after {PURGE_TIMEOUT_S} s"
            time.sleep(POLL_S)
        proc = run(noacct, "squeue", "-j", job_id)
        assert proc.returncode != 0 and "Invalid job id" in proc.stderr


# ------------------------------------------------------------ --cpus, --gpus --
@pytest.fixture(scope="class")
def small_node(slurm_env) -> Iterator[dict[str, str]]:
    """The variant with --cpus 2 --gpus 2 (no accounting, which it does not need: faster)."""
    with site_cluster("rule-small", "--no-accounting", "--cpus", "2", "--gpus", "2") as env:
        yield env


class TestSmallNode:
    """Site rules `--cpus 2` and `--gpus 2`: a node smaller than the default one."""

    def test_cpus_more_than_node_refused(self, small_node, tmp_path):
        """--cpus 2: --cpus-per-task=4 is refused ('Requested node configuration is not available'),
        --cpus-per-task=2 is accepted and runs."""
        assert set(ok(small_node, "sinfo", "-h", "-N", "-o", "%c").split()) == {"2"}
        assert NODE_TOO_SMALL in refused(small_node, "--test-only", "--cpus-per-task=4", "--wrap", "true")
        ok(small_node, "sbatch", "--test-only", "--cpus-per-task=2", "--wrap", "true")
        _, output = run_job(small_node, tmp_path, "-p", "cpu", "--cpus-per-task=2",
                            body="echo cpus=$SLURM_CPUS_PER_TASK")
        assert "cpus=2" in output

    def test_gpus_more_than_node_refused(self, small_node, tmp_path):
        """--gpus 2: the node has gpu:2 (gres.conf File=nvidia[0-1]), --gres=gpu:3 is refused, gpu:2 runs."""
        assert ok(small_node, "sinfo", "-h", "-p", "gpu", "-o", "%G").strip() == "gpu:2"
        assert "nvidia[0-1]" in (state_dir("rule-small") / "gres.conf").read_text()
        assert NODE_TOO_SMALL in refused(small_node, "--test-only", "--gres=gpu:3", "--wrap", "true")
        _, output = run_job(small_node, tmp_path, "--gres=gpu:2", body="echo gpus=$CUDA_VISIBLE_DEVICES")
        assert "gpus=0,1" in output


# ---------------------------------------------------- --gpu-partition-needs-gpu --
@pytest.fixture(scope="class")
def gpu_rule(slurm_env) -> Iterator[dict[str, str]]:
    """The variant with --gpu-partition-needs-gpu (no accounting, which it does not need: faster)."""
    with site_cluster("rule-gpu", "--no-accounting", "--gpu-partition-needs-gpu") as env:
        yield env


class TestGpuPartitionNeedsGpu:
    """Site rule `--gpu-partition-needs-gpu`: job_submit.lua refuses jobs on partition gpu that request no GPU."""

    @pytest.mark.parametrize("partition", [[], ["-p", "gpu"], ["--partition=cpu,gpu"]],
                             ids=["default-partition", "gpu", "cpu-or-gpu"])
    def test_no_gpu_job_on_gpu_partition_refused(self, gpu_rule, partition):
        """--gpu-partition-needs-gpu: a CPU-only job on gpu (named or the default) is refused with the message,
        by sbatch and by sbatch --test-only alike."""
        assert config_value(gpu_rule, "JobSubmitPlugins") == "lua"
        for test_only in ([], ["--test-only"]):
            assert GPU_RULE_MESSAGE in refused(gpu_rule, *test_only, *partition, "--wrap", "true")
        assert GPU_RULE_MESSAGE in refused(gpu_rule, *partition, "--gres=gpu:0", "--wrap", "true")

    @pytest.mark.parametrize("gpu", ["--gres=gpu:1", "--gpus-per-node=1"], ids=["gres", "submitit-gpus-per-node"])
    def test_gpu_job_on_gpu_partition_accepted(self, gpu_rule, tmp_path, gpu):
        """--gpu-partition-needs-gpu: jobs that request a GPU (--gres=gpu:1, submitit's --gpus-per-node=1) run."""
        _, output = run_job(gpu_rule, tmp_path, "-p", "gpu", gpu, body="echo gpus=$CUDA_VISIBLE_DEVICES")
        assert "gpus=0" in output

    def test_cpu_job_on_cpu_partition_accepted(self, gpu_rule, tmp_path):
        """--gpu-partition-needs-gpu: a CPU-only job on partition cpu is not affected."""
        run_job(gpu_rule, tmp_path, "-p", "cpu")


# ------------------------------------------------------------ --qos-max-submit --
@pytest.fixture(scope="class")
def qos_limit(slurm_env) -> Iterator[dict[str, str]]:
    """The variant with --qos-max-submit 3 (with accounting: the limit needs slurmdbd)."""
    with site_cluster("rule-qos", "--qos-max-submit", "3") as env:
        yield env


class TestQosMaxSubmit:
    """Site rule `--qos-max-submit 3`: QOS limited has MaxSubmitJobsPerUser=3, enforced; array tasks count."""

    def test_qos_max_submit_refuses_larger_array(self, qos_limit):
        """--qos-max-submit 3: a 4-task array with --qos=limited is refused (QOSMaxSubmitJobPerUserLimit)."""
        assert "associations,limits,qos" in config_value(qos_limit, "AccountingStorageEnforce")
        qos = ok(qos_limit, "sacctmgr", "-n", "-P", "show", "qos", "limited", "format=name,maxsubmitjobsperuser")
        assert qos.strip() == "limited|3"
        printed = refused(qos_limit, "--qos=limited", "--array=0-3", "--wrap", "true")
        assert QOS_SUBMIT_LIMIT in printed and QOS_POLICY in printed

    def test_qos_max_submit_accepts_array_within_limit(self, qos_limit, tmp_path):
        """--qos-max-submit 3: a 3-task array with --qos=limited is accepted and all its tasks complete."""
        job_id = submit(qos_limit, "--qos=limited", "--array=0-2", "-o", str(tmp_path / "%A_%a.out"),
                        "--wrap", "true")
        assert wait_finished(qos_limit, job_id, tasks=3) == ["COMPLETED"] * 3
        qos = ok(qos_limit, "squeue", "-h", "-t", "all", "-j", job_id, "-o", "%q").split()
        assert qos == ["limited"] * 3

    def test_qos_max_submit_jobs_without_qos_unaffected(self, qos_limit, tmp_path):
        """--qos-max-submit 3: jobs without --qos (QOS normal, account root) are not limited and run; sacct
        works."""
        job_id = submit(qos_limit, "--array=0-5", "-o", str(tmp_path / "%A_%a.out"), "--wrap", "true")
        assert wait_finished(qos_limit, job_id, tasks=6) == ["COMPLETED"] * 6
        fields = ok(qos_limit, "squeue", "-h", "-t", "all", "-j", job_id, "-o", "%q|%a").split()
        assert fields == ["normal|root"] * 6
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while len(ok(qos_limit, "sacct", "-n", "-X", "-j", job_id, "-o", "jobid").split()) < 6:
            assert time.monotonic() < deadline, f"sacct never showed the 6 tasks of {job_id}"
            time.sleep(POLL_S)

    def test_qos_max_submit_needs_accounting(self, slurm_env, tmp_path):
        """--qos-max-submit with --no-accounting is a usage error (exit 2); nothing is started."""
        proc = subprocess.run([str(SCRIPT), "start", "--no-accounting", "--qos-max-submit", "3"],
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HPC_RADR_SLURM_DIR": str(tmp_path / "x"),
                                   "HPC_RADR_SLURM_PORT_BASE": "7990"},
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        assert proc.returncode == 2
        assert "--qos-max-submit needs accounting" in proc.stderr
        assert not (tmp_path / "x").exists()
