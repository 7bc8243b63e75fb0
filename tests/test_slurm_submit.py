"""The cluster workflow against the project's real Slurm test cluster: submit, status, cancel, resubmit, collect.

Needs scripts/slurm-cluster running (scripts/test starts it; it sets MaxArraySize=8 for the split test).
"""

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_sweep

ONE_DATASET = """
[[datasets]]
name = "high_medium"
tiers = ["high", "medium"]
"""

pytestmark = pytest.mark.slurm
ACTIVE = {"pending", "running"}
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def cli(env, *args, check=True):
    done = subprocess.run([sys.executable, "-m", "hpc_radr", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def slurm(env, *args):
    done = subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def job_fields(env, job_id) -> list[dict[str, str]]:
    """`scontrol show job -o` parsed: one dict per (array) task record."""
    records = []
    for line in slurm(env, "scontrol", "show", "job", "-o", job_id).splitlines():
        fields = {}
        for token in line.split():
            key, _, value = token.partition("=")
            fields[key] = value
        records.append(fields)
    return records



def job_fields_of_array(records: list[dict[str, str]]) -> set[str]:
    """The array job ids of `scontrol show job` records (a job that is no array has none)."""
    return {r["ArrayJobId"] for r in records if "ArrayJobId" in r}

def wait_until_settled(env, run_dir, expect=None, limit_s=900) -> dict:
    """Poll status until nothing is queued or running (and, given ``expect``, the counts match it:
    sacct lists finished tasks a few seconds late)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        report = json.loads(cli(env, "status", run_dir, "--json").stdout)
        if not ACTIVE & set(report["counts"]) and (expect is None or report["counts"] == expect):
            return report
        time.sleep(3)
    pytest.fail(f"status after {limit_s} s: {report['counts']}, expected {expect or 'nothing active'}")


@pytest.fixture(scope="module")
def submitted(slurm_env, small_data, tmp_path_factory):
    """A 4-run sweep submitted to the gpu partition, one task at a time, with one task cancelled at once; its 74
    clips are extracted by an array of 4 shards of at most 20."""
    folder = tmp_path_factory.mktemp("slurm")
    sweep = write_sweep(folder, name="slurmsmall", modes='["linear"]', ratios="[0.0, 0.5]", seeds="[1, 2]",
                        epochs=3, datasets=ONE_DATASET)
    run_dir = folder / "run"
    out = cli(slurm_env, "submit", sweep, "--data", small_data, "--run-dir", run_dir, "--partition", "gpu",
              "--array-parallelism", "1", "--cpus-per-task", "1", "--embed-shard-clips", "20", "--json").stdout
    jobs = {job["name"]: job for job in json.loads(out)["jobs"]}
    fields = {name: job_fields(slurm_env, job["job_id"]) for name, job in jobs.items()}
    array = jobs["train:0"]
    cancelled_task = len(array["tasks"]) - 1
    slurm(slurm_env, "scancel", f"{array['job_id']}_{cancelled_task}")
    # What `status` says right after submit, taken here because the tests that use this sweep let it run to its
    # end: test_status_lists_each_job_of_the_chain_and_why_it_waits checks it whichever test runs first.
    collect_id = jobs["collect"]["job_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # slurmctld may give a new job its reason only at its next scheduling pass
        if slurm(slurm_env, "squeue", "-h", "-o", "%r", "-j", collect_id).strip() not in ("", "None"):
            break
        time.sleep(1)
    after_submit = {"json": cli(slurm_env, "status", run_dir, "--json", check=False),
                    "human": cli(slurm_env, "status", run_dir, check=False)}
    return {"run_dir": run_dir, "jobs": jobs, "cancelled": array["tasks"][cancelled_task][0], "fields": fields,
            "status_after_submit": after_submit}


def test_one_array_with_gpus_waiting_for_the_extraction_array(submitted):
    jobs = submitted["jobs"]
    assert sorted(jobs) == ["collect", "embed", "train:0"]
    embed = jobs["embed"]
    assert embed["tasks"] == [["0:20"], ["20:40"], ["40:60"], ["60:74"]]  # 42 training and 32 test clips
    assert job_fields_of_array(submitted["fields"]["embed"]) == {embed["job_id"]}
    array = jobs["train:0"]
    assert len(array["tasks"]) == 4  # 4 configurations, 4 unique runs (ratio 0.0 with one mode)
    records = submitted["fields"]["train:0"]
    assert {r["ArrayJobId"] for r in records} == {array["job_id"]}
    assert records[0]["ArrayTaskId"] == "0-3%1"  # one array, 4 tasks, one at a time
    first = records[0]
    assert "gres:gpu:1" in first.get("TresPerNode", "") or "gpu:1" in first.get("TresPerNode", "")
    assert embed["job_id"] in first["Dependency"] and "afterok" in first["Dependency"]
    collect = submitted["fields"]["collect"][0]
    assert "afterany" in collect["Dependency"] and array["job_id"] in collect["Dependency"]


def test_status_lists_each_job_of_the_chain_and_why_it_waits(submitted):
    """Right after submit the collect job cannot have started: it waits for the 4-task array, which runs one
    task at a time after the extraction array. Slurm's own reason reaches the user. (The fixture ran `status`
    right after submitting, so this holds whether or not the other tests have let the sweep finish.)"""
    jobs = submitted["jobs"]
    done, human_done = submitted["status_after_submit"]["json"], submitted["status_after_submit"]["human"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert human_done.returncode == 0, human_done.stdout[-3000:] + human_done.stderr[-3000:]
    report = json.loads(done.stdout)
    listed = {job["name"]: job for job in report["jobs"]}
    assert list(listed) == ["embed", "train:0", "collect"]  # submission order
    assert listed["embed"]["tasks"] == 4 and report["clips"]["total"] == 74
    assert {name: job["job_id"] for name, job in listed.items()} == {n: j["job_id"] for n, j in jobs.items()}
    assert listed["collect"]["counts"] == {"pending": 1} and listed["collect"]["waiting_for"] == ["Dependency"]
    array = listed["train:0"]
    assert array["tasks"] == 4 and sum(array["counts"].values()) == 4
    human = human_done.stdout
    assert "waiting: Dependency, for the jobs before it in the chain" in human
    assert f"job {jobs['train:0']['job_id']}" in human and "4 tasks:" in human


def test_status_shows_the_cancelled_task_and_resubmit_runs_only_it(submitted, slurm_env):
    run_dir = submitted["run_dir"]
    report = wait_until_settled(slurm_env, run_dir, expect={"completed": 3, "cancelled": 1})
    cancelled = [c for c in report["configurations"] if c["state"] == "cancelled"]
    assert [c["run_id"] for c in cancelled] == [submitted["cancelled"]]
    assert cancelled[0]["scheduler_state"].startswith("CANCELLED")  # before it started: Slurm keeps no record
    human = cli(slurm_env, "status", run_dir).stdout
    assert "cancelled" in human and submitted["cancelled"] in human
    # Slurm ends a task a moment after its result is written (COMPLETING): poll the job view until it agrees
    deadline = time.monotonic() + 120
    while True:
        jobs = json.loads(cli(slurm_env, "status", run_dir, "--json").stdout)["jobs"]
        array = next(job for job in jobs if job["name"] == "train:0")
        if not ACTIVE & set(array["counts"]) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert array["counts"] == {"completed": 3, "cancelled": 1} and array["waiting_for"] == []

    # the collect job ran after the array ended
    deadline = time.monotonic() + 120
    while not (run_dir / "results.csv").exists() and time.monotonic() < deadline:
        time.sleep(2)
    assert (run_dir / "results.csv").exists()

    out = json.loads(cli(slurm_env, "resubmit", run_dir, "--partition", "gpu", "--json").stdout)
    trains = [j for j in out["jobs"] if j["kind"] == "train"]
    assert [j["tasks"] for j in trains] == [[[submitted["cancelled"]]]]
    assert not [j for j in out["jobs"] if j["kind"] == "embed"]  # caches exist already
    # every clip extracted once, by the four shards
    shards = [json.loads(p.read_text()) for p in (run_dir / "clips").glob("shard-*.json")]
    assert sorted(s["clips"] for s in shards) == [14, 20, 20, 20]
    assert json.loads(cli(slurm_env, "status", run_dir, "--json").stdout)["clips"] == {"stored": 74, "total": 74}
    wait_until_settled(slurm_env, run_dir, expect={"completed": 4})
    collected = json.loads(cli(slurm_env, "collect", run_dir, "--json").stdout)
    assert len(collected["rows"]) == 4 and not collected["missing"] and not collected["failed"]
    result = json.loads((run_dir / "results" / f"{submitted['cancelled']}.json").read_text())
    assert result["environment"]["slurm"]["SLURM_JOB_PARTITION"] == "gpu"
    # the GPU Slurm granted is the one TensorFlow's environment names (BirdNET's import would blank it)
    gpus = result["gpus"]
    assert gpus["SLURM_JOB_GPUS"] and gpus["CUDA_VISIBLE_DEVICES"] == gpus["SLURM_JOB_GPUS"]


def test_arrays_larger_than_max_array_size_are_split(slurm_env, small_data, tmp_path):
    max_array = int(next(line.split("=")[1] for line in slurm(slurm_env, "scontrol", "show", "config").splitlines()
                         if line.startswith("MaxArraySize")))
    assert max_array == 8, "scripts/test starts the test cluster with --max-array-size 8"
    sweep = write_sweep(tmp_path, name="splitme", modes='["linear", "mean"]', ratios="[0.5, 1.0]",
                        seeds="[1, 2, 3]", epochs=1)  # 2 datasets x 2 x 2 x 3 = 24 runs -> 8 + 8 + 8
    out = json.loads(cli(slurm_env, "submit", sweep, "--data", small_data, "--run-dir", tmp_path / "run",
                         "--partition", "gpu", "--sbatch", "hold", "--array-parallelism", "4", "--json").stdout)
    try:
        arrays = [j for j in out["jobs"] if j["kind"] == "train"]
        assert [len(j["tasks"]) for j in arrays] == [8, 8, 8]
        seen = [run for j in arrays for task in j["tasks"] for run in task]
        assert len(seen) == len(set(seen)) == 24
        throttles = []
        for job in arrays:
            records = job_fields(slurm_env, job["job_id"])
            assert records[0]["ArrayTaskId"].startswith("0-7")
            assert records[0]["JobState"] == "PENDING"
            throttles.append(int(records[0]["ArrayTaskThrottle"]))
        assert sum(throttles) == 4  # --array-parallelism is for the sweep, shared by its three arrays
    finally:
        slurm(slurm_env, "scancel", *[j["job_id"] for j in out["jobs"]])


HOSTILE = "we ird 'q' $(touch PWNED) `touch PWNED` ; x"


def test_hostile_names_paths_and_setup_reach_the_job_exactly(slurm_env, small_data, tmp_path):
    base = tmp_path / HOSTILE
    data = shutil.copytree(small_data, base / "data\nsecond line")  # data paths travel in the manifest, not the script
    sweep = write_sweep(base, name="hostile", modes='["linear"]', ratios="[0.0]", seeds="[1]", epochs=1,
                        datasets='\n[[datasets]]\nname = "a b; $(touch PWNED) `x`\\nline two"\ntiers = ["high"]\n')
    marker = base / "setup marker"
    setup = f"printf '%s' 'it'\"'\"'s $(touch PWNED) `x`; ok' > {shlex.quote(str(marker))}"
    run_dir = base / "run dir"
    out = json.loads(cli(slurm_env, "submit", sweep, "--data", data, "--run-dir", run_dir, "--partition", "gpu",
                         "--setup", setup, "--json").stdout)
    assert {j["kind"] for j in out["jobs"]} == {"embed", "train", "collect"}
    report = wait_until_settled(slurm_env, run_dir, expect={"completed": 1})
    row = report["configurations"][0]
    assert row["dataset"] == "a b; $(touch PWNED) `x`\nline two"
    assert marker.read_text() == "it's $(touch PWNED) `x`; ok"
    assert not list(tmp_path.rglob("PWNED")) and not (Path.cwd() / "PWNED").exists()


def test_an_option_the_cluster_rejects_submits_and_creates_nothing(slurm_env, small_data, tmp_path):
    sweep = write_sweep(tmp_path, name="rejected", modes='["linear"]', ratios="[0.0]", seeds="[1]", epochs=1)
    done = cli(slurm_env, "submit", sweep, "--data", small_data, "--run-dir", tmp_path / "run",
               "--partition", "nosuchpartition", check=False)
    assert done.returncode == 2
    assert "invalid partition" in done.stderr.lower() and "nothing was submitted" in done.stderr
    assert not (tmp_path / "run").exists()
    assert "rejected" not in slurm(slurm_env, "squeue", "-h", "-o", "%j")
    assert "rejected" not in slurm(slurm_env, "sacct", "-X", "-n", "-P", "-o", "JobName")


def test_a_preempted_task_is_requeued_and_skips_the_runs_it_finished(slurm_env, small_data, tmp_path):
    """USR2 is what Slurm sends before a time limit or a preemption; submitit requeues the task."""
    sweep = write_sweep(tmp_path, name="requeue", modes='["linear"]', ratios="[0.0, 1.0]", seeds="[1]",
                        epochs=200, datasets=ONE_DATASET)
    run_dir = tmp_path / "run"
    out = json.loads(cli(slurm_env, "submit", sweep, "--data", small_data, "--run-dir", run_dir, "--partition", "gpu",
                         "--runs-per-task", "2", "--json").stdout)
    train = next(j for j in out["jobs"] if j["kind"] == "train")
    first, second = train["tasks"][0]
    first_result, second_log = run_dir / "results" / f"{first}.json", run_dir / "logs" / f"{second}.log"
    second_path = run_dir / "results" / f"{second}.json"
    deadline = time.monotonic() + 600
    while not second_log.exists() and time.monotonic() < deadline:  # the second run has just begun
        time.sleep(0.1)
    assert second_log.exists(), "the second run never began within 600 s"
    assert first_result.exists(), "the first run never finished"
    stamp = first_result.stat().st_mtime_ns
    # The test means something only if USR2 reaches the task while its second run still trains (200 epochs:
    # about 30 s on 2 cores, against the ~0.1 s between its log appearing and the signal). Say so if not.
    assert not second_path.exists(), (f"the second run ({second}) finished before USR2 was sent: it must still "
                                      "be training then, so give it more epochs")
    slurm(slurm_env, "scancel", "--signal=USR2", train["job_id"])
    deadline = time.monotonic() + 120
    while (record := job_fields(slurm_env, train["job_id"])[0]).get("Restarts") == "0" \
            and record.get("JobState") not in ENDED and time.monotonic() < deadline:
        time.sleep(0.5)
    assert record.get("Restarts") == "1", (f"USR2 did not requeue the task within 120 s: Restarts="
                                           f"{record.get('Restarts')} JobState={record.get('JobState')} "
                                           f"Reason={record.get('Reason')}")
    wait_until_settled(slurm_env, run_dir, expect={"completed": 2}, limit_s=900)
    assert first_result.stat().st_mtime_ns == stamp  # not trained again after the requeue
    second_result = json.loads(second_path.read_text())
    restarts = second_result["environment"]["slurm"].get("SLURM_RESTART_COUNT")
    assert second_result["environment"]["slurm"].get("SLURM_RESTART_COUNT") == "1", (
        f"SLURM_RESTART_COUNT={restarts} in the second run's result, expected 1 (trained by the requeued attempt); "
        "none means it finished between the check above and USR2's arrival and the requeue skipped it")


def test_a_failed_embedding_job_cancels_the_array_instead_of_every_task_failing(slurm_env, small_data, tmp_path):
    data = shutil.copytree(small_data, tmp_path / "data")
    sweep = write_sweep(tmp_path, name="embedfail", modes='["linear"]', ratios="[0.0, 1.0]", seeds="[1]", epochs=1,
                        datasets=ONE_DATASET)
    run_dir = tmp_path / "run"
    out = json.loads(cli(slurm_env, "submit", sweep, "--data", data, "--run-dir", run_dir, "--partition", "gpu",
                         "--sbatch", "hold", "--json").stdout)
    victim = next((data / "train" / "RADR" / "high").iterdir())
    victim.write_bytes(victim.read_bytes()[:-2])  # the data changes after submit: extraction must refuse it
    slurm(slurm_env, "scontrol", "release", ",".join(j["job_id"] for j in out["jobs"]))
    report = wait_until_settled(slurm_env, run_dir, expect={"cancelled": 2})
    assert any("embedding job" in p and "(embed) ended" in p for p in report["problems"]), report["problems"]
    assert not (run_dir / "results").exists() or not list((run_dir / "results").glob("*.json"))


AXES_SWEEP = """name = "slurmaxes"
[[datasets]]
name = "high_medium"
tiers = ["high", "medium"]
[grid]
upsampling_modes = ["linear"]
upsampling_ratios = [1.0]
focal_loss = [false, true]
hidden_units = [0, 16]
dropout = [0.0, 0.25]
focal_loss_gamma = [2.0, 4.0]
crop_mode = ["center", "first"]
seeds = [1]
[baseline]
upsampling_ratio = 1.0
focal_loss = false
hidden_units = 0
dropout = 0.0
crop_mode = "center"
[training]
epochs = 2
"""


def test_an_axis_sweep_runs_on_the_cluster_and_trains_inert_duplicates_once(slurm_env, small_data, tmp_path):
    """hidden units x dropout x focal gamma x crop mode through the real chain: one clip store with each clip once
    per crop mode, training waiting for it, gamma without focal loss trained once, the report against [baseline]."""
    (tmp_path / "axes.toml").write_text(AXES_SWEEP)
    run_dir = tmp_path / "run"
    out = json.loads(cli(slurm_env, "submit", tmp_path / "axes.toml", "--data", small_data, "--run-dir", run_dir,
                         "--partition", "gpu", "--cpus-per-task", "1", "--runs-per-task", "6", "--json").stdout)
    jobs = {job["name"]: job for job in out["jobs"]}
    assert sorted(jobs) == ["collect", "embed", "train:0"]
    runs = [run for task in jobs["train:0"]["tasks"] for run in task]
    assert len(runs) == len(set(runs)) == 24  # 32 configurations: with focal loss off both gammas are one run
    assert jobs["embed"]["job_id"] in job_fields(slurm_env, jobs["train:0"]["job_id"])[0]["Dependency"]

    wait_until_settled(slurm_env, run_dir, expect={"completed": 32})
    deadline = time.monotonic() + 180
    while not (run_dir / "report" / "report.json").exists() and time.monotonic() < deadline:
        time.sleep(2)  # the collect job writes the tables and the report after the array
    assert (run_dir / "report" / "report.json").exists()
    assert json.loads(cli(slurm_env, "status", run_dir, "--json").stdout)["clips"] == {"stored": 148, "total": 148}
    shards = [json.loads(p.read_text()) for p in (run_dir / "clips").glob("shard-*.json")]
    assert sum(s["clips"] for s in shards) == 148  # 74 clips, each once per crop mode
    for run in runs:
        training = json.loads((run_dir / "results" / f"{run}.json").read_text())["training"]
        assert f"hidden{training['hidden_units']}__" in run and f"crop-{training['crop_mode']}__" in run
        assert f"dropout{training['dropout']:g}__" in run, run

    report = json.loads(cli(slurm_env, "report", run_dir, "--json").stdout)
    remedies = {e["remedy"] for e in report["effects"]}
    assert len(remedies) == 2 * 2 * 2 - 1 + 2 * 2 * 2 * 2  # focal off: 8 settings, one the baseline; on: 16
    assert "linear x1, no focal loss, hidden units 0, dropout 0, crop mode center" not in remedies
