"""Tests against a real single-node Slurm cluster (see scripts/slurm-cluster).

They use a cluster that is already running: set HPC_RADR_SLURM_ENV to the env
file that `scripts/slurm-cluster start` printed. Without it they are skipped.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from site_cluster import parse_env_file

pytestmark = pytest.mark.slurm

ENV_VAR = "HPC_RADR_SLURM_ENV"
COMMAND_TIMEOUT_S = 60
JOB_TIMEOUT_S = 180

# sacct states after which a job (or array task) does not change any more.
TERMINAL_STATES = (
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
)


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    env_path = os.environ.get(ENV_VAR)
    if not env_path:
        pytest.skip(
            f"{ENV_VAR} is not set: start a cluster with `scripts/slurm-cluster start` "
            f"and set {ENV_VAR} to the env file it prints"
        )
    path = Path(env_path)
    if not path.is_file():
        pytest.fail(f"{ENV_VAR}={env_path} does not exist (is the cluster running?)")
    exports = parse_env_file(path)
    assert "SLURM_CONF" in exports, f"{path} does not export SLURM_CONF"
    env = dict(os.environ)
    env.update(exports)
    proc = subprocess.run(
        ["sinfo", "-h", "-o", "%P"],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    if proc.returncode != 0:
        pytest.fail(f"sinfo failed against {exports['SLURM_CONF']}: {proc.stderr.strip()}")
    return env


def run(env: dict[str, str], *args: str) -> str:
    # From a scratch folder: a job without --output writes slurm-<id>.out where it was submitted
    proc = subprocess.run(
        list(args), env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, cwd=tempfile.gettempdir()
    )
    assert proc.returncode == 0, (
        f"{shlex.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    return proc.stdout


def submit(env: dict[str, str], *args: str) -> str:
    out = run(env, "sbatch", "--parsable", *args).strip()
    job_id = out.split(";")[0]
    assert job_id.isdigit(), f"unexpected sbatch output {out!r}"
    return job_id


def sacct_tasks(env: dict[str, str], job_id: str) -> dict[str, str]:
    """Map each array task id (`<job>_<k>`) to its state, as sacct reports it.

    Slurm 22.05's sacct has no `--array` option (it came in 23.02): it lists a
    task on its own row once the task has started, and the tasks still pending
    as one row `<job>_[a-b]`.
    """
    out = run(env, "sacct", "-j", job_id, "-X", "-n", "-P", "-o", "JobID,State")
    states: dict[str, str] = {}
    for line in out.splitlines():
        if not line.strip():
            continue
        task, _, state = line.partition("|")
        states[task.strip()] = state.strip()
    return states


def wait_for(description: str, predicate, timeout: float = JOB_TIMEOUT_S, interval: float = 0.5):
    """Poll `predicate` until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {description} (last: {last!r})")
        time.sleep(interval)


def cancel_quietly(env: dict[str, str], job_id: str) -> None:
    subprocess.run(["scancel", job_id], env=env, capture_output=True, timeout=COMMAND_TIMEOUT_S)


def test_partitions_and_fake_gpus(slurm_env):
    out = run(slurm_env, "sinfo", "-h", "-o", "%P|%G|%a")
    rows = {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines() if line}
    assert "gpu*" in rows, f"gpu is not the default partition: {out!r}"
    assert "cpu" in rows, f"no cpu partition: {out!r}"
    gres, avail = rows["gpu*"]
    assert gres.startswith("gpu:8"), f"gpu partition node gres is {gres!r}"
    assert avail == "up"


def test_gpu_array_runs_three_tasks_and_sacct_reports_them(slurm_env, tmp_path):
    tag = uuid.uuid4().hex[:8]
    script = (
        'echo "task=${SLURM_ARRAY_TASK_ID} '
        'cuda=${CUDA_VISIBLE_DEVICES:-} gpus=${SLURM_JOB_GPUS:-} '
        'array_job=${SLURM_ARRAY_JOB_ID}"'
    )
    job_id = submit(
        slurm_env,
        "--array=0-2",
        "--gres=gpu:1",
        "-p",
        "gpu",
        f"--job-name=hpc-radr-test-{tag}",
        "-o",
        str(tmp_path / "out_%A_%a.txt"),
        "--wrap",
        script,
    )
    expected = {f"{job_id}_{k}" for k in range(3)}
    try:
        states = wait_for(
            f"sacct to report all tasks of array {job_id} finished",
            lambda: (
                s
                if expected <= set(s := sacct_tasks(slurm_env, job_id))
                and all(s[t].startswith(TERMINAL_STATES) for t in expected)
                else None
            ),
        )
    finally:
        cancel_quietly(slurm_env, job_id)

    assert set(states) == expected, f"sacct listed {sorted(states)}"
    for task in sorted(expected):
        assert states[task] == "COMPLETED", f"{task} ended {states[task]}"

    for k in range(3):
        out_file = tmp_path / f"out_{job_id}_{k}.txt"
        assert out_file.is_file(), f"no output file for task {k}"
        fields = dict(item.split("=", 1) for item in out_file.read_text().split())
        assert fields["task"] == str(k)
        assert fields["array_job"] == job_id
        assert fields["cuda"], f"task {k} saw no CUDA_VISIBLE_DEVICES"
        assert fields["gpus"], f"task {k} saw no SLURM_JOB_GPUS"
        # One fake GPU per task.
        assert len(fields["cuda"].split(",")) == 1
        assert len(fields["gpus"].split(",")) == 1


def test_cancelling_one_array_task_shows_cancelled_in_sacct(slurm_env):
    tag = uuid.uuid4().hex[:8]
    job_id = submit(
        slurm_env,
        "--array=0-2",
        "-p",
        "cpu",
        f"--job-name=hpc-radr-test-{tag}",
        "-o",
        "/dev/null",
        "--wrap",
        "sleep 600",
    )
    tasks = [f"{job_id}_{k}" for k in range(3)]
    victim = tasks[1]
    try:
        wait_for(
            f"all tasks of array {job_id} to run",
            lambda: all(
                sacct_tasks(slurm_env, job_id).get(t) == "RUNNING" for t in tasks
            ),
        )
        run(slurm_env, "scancel", victim)
        states = wait_for(
            f"sacct to report {victim} cancelled",
            lambda: (
                s
                if (s := sacct_tasks(slurm_env, job_id)).get(victim, "").startswith("CANCELLED")
                else None
            ),
        )
        # Only the one task was cancelled; its siblings still sleep.
        assert states[tasks[0]] == "RUNNING", states
        assert states[tasks[2]] == "RUNNING", states
    finally:
        cancel_quietly(slurm_env, job_id)

    wait_for(
        f"sacct to report every task of {job_id} cancelled after scancel of the array",
        lambda: all(
            sacct_tasks(slurm_env, job_id).get(t, "").startswith("CANCELLED") for t in tasks
        ),
    )
