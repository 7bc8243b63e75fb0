"""The job plan: one chain of jobs, fitted to the cluster's limits, rendered the same by submitit and the
sbatch templates."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import write_sweep

from hpc_radr.executors import slurm
from hpc_radr.executors.sbatch_scripts import SUBMIT_ALL, render_plan, script_name
from hpc_radr.executors.slurm_site import SiteUnreadable, parse_config, parse_limit
from hpc_radr.job_plan import JobKind, PlanError, plan_jobs, shards, slurm_options
from hpc_radr.submission import prepare

RUNS = [f"run{k}" for k in range(84)]
CLIPS = list(range(600))  # the positions of the clips to extract, all of a sweep of 600: one shard by default


def lanes(plan) -> dict[str, tuple[int, int]]:
    """Lane (a chain of arrays linked by afterany, named by its first) -> (largest throttle, tasks): arrays of
    one lane run one after another."""
    lane_of: dict[str, str] = {}
    found: dict[str, tuple[int, int]] = {}
    for job in (job for job in plan.jobs if job.kind is JobKind.train):
        lane = lane_of[job.after_any[0]] if job.after_any else job.name
        lane_of[job.name] = lane
        throttle, tasks = found.get(lane, (0, 0))
        found[lane] = (max(throttle, job.throttle), tasks + len(job.tasks))
    return found


def submitted_jobs(plan) -> int:
    """What Slurm counts against a limit on submitted jobs: every array task is one job."""
    return sum(len(job.tasks) for job in plan.jobs)


def running_at_most(plan) -> int:
    """The most training tasks that can run at once: the sum over lanes of their largest throttle."""
    return sum(throttle for throttle, _ in lanes(plan).values())


@pytest.mark.parametrize(("max_array", "throttle"), [(40, 32), (40, 2), (8, 1), (1001, 32), (10, 5), (3, 4), (8, 8),
                                                     (7, 3)])
def test_the_throttle_holds_for_the_whole_sweep(max_array, throttle):
    plan = plan_jobs("s", CLIPS, len(CLIPS), RUNS, slurm_options(array_parallelism=throttle), max_array)
    arrays = [job for job in plan.jobs if job.kind is JobKind.train]
    assert all(len(job.tasks) <= max_array for job in arrays)
    assert [run for job in arrays for run in job.runs] == RUNS  # every run once, in order
    assert running_at_most(plan) <= throttle
    assert running_at_most(plan) == min(throttle, len(RUNS))  # and the whole throttle is used
    per_slot = [tasks / throttle for throttle, tasks in lanes(plan).values()]
    assert max(per_slot) - min(per_slot) <= 1  # every lane drains at the same pace


def test_the_measured_case_of_three_arrays_no_longer_runs_68_tasks_at_once():
    """MaxArraySize 40 and --array-parallelism 32 once gave %32, %32, %4: 68 at once."""
    plan = plan_jobs("s", CLIPS, len(CLIPS), RUNS, slurm_options(array_parallelism=32), 40)
    assert [(len(j.tasks), j.throttle) for j in plan.jobs if j.kind is JobKind.train] == [(28, 11), (28, 11), (28, 10)]


def test_a_submit_limit_packs_runs_into_fewer_tasks():
    three_shards = slurm_options(embed_shard_clips=200)
    plan = plan_jobs("s", CLIPS, len(CLIPS), RUNS, three_shards, 1001, submit_limit=30)
    # 3 extraction tasks + collect leave 26 tasks: 84 / 26
    assert submitted_jobs(plan) <= 30 and plan.runs_per_task == 4
    assert [run for job in plan.jobs if job.kind is JobKind.train for run in job.runs] == RUNS
    free = plan_jobs("s", CLIPS, len(CLIPS), RUNS, slurm_options(), 1001, submit_limit=None)
    assert free.runs_per_task == 1 and submitted_jobs(free) == 86


def test_a_submit_limit_that_cannot_be_met_is_refused_with_the_fix():
    with pytest.raises(PlanError, match=r"--runs-per-task 2 makes 42 training tasks.*use --runs-per-task 4"):
        plan_jobs("s", CLIPS, len(CLIPS), RUNS, slurm_options(runs_per_task=2, embed_shard_clips=200), 1001,
                  submit_limit=30)
    with pytest.raises(PlanError, match="lets you submit 3 more jobs.*needs 4 besides"):
        plan_jobs("s", CLIPS, len(CLIPS), RUNS, slurm_options(embed_shard_clips=200), 1001, submit_limit=3)


def test_each_kind_of_job_has_its_own_resources():
    options = slurm_options(partition="gpu", cpu_partition="cpu", embed_cpus=6, embed_mem_gb=8, collect_time_min=5)
    plan = plan_jobs("s", CLIPS, len(CLIPS), RUNS[:3], options, 1001)
    by_kind = {job.kind: job.resources for job in plan.jobs}
    assert by_kind[JobKind.train].partition == "gpu" and by_kind[JobKind.train].gpus == 1
    assert (by_kind[JobKind.embed].partition, by_kind[JobKind.embed].cpus, by_kind[JobKind.embed].mem) == \
        ("cpu", 6, "8192M")
    assert by_kind[JobKind.embed].gpus == 0 and by_kind[JobKind.collect].gpus == 0
    assert (by_kind[JobKind.collect].partition, by_kind[JobKind.collect].time_min) == ("cpu", 5)
    plain = {job.kind: job.resources for job in plan_jobs("s", CLIPS, len(CLIPS), RUNS[:3],
                                                          slurm_options(partition="gpu"), 1001).jobs}
    assert plain[JobKind.embed].partition == "gpu"  # no CPU partition named: the training one


def test_a_rejection_names_the_job_its_request_and_the_options():
    job = plan_jobs("s", CLIPS, len(CLIPS), RUNS[:1], slurm_options(partition="gpu", embed_cpus=4), 1001).jobs[0]
    message = slurm.rejection(job, "sbatch: error: Batch job submission failed: Requested node configuration "
                                   "is not available\n")
    assert message.startswith("Slurm rejected embed (partition gpu, 4 CPUs, no GPU, 4096M memory, 120 min): "
                              "sbatch: error: Batch job submission failed: Requested node configuration")
    assert "--embed-cpus" in message and "--embed-partition (or --cpu-partition)" in message



def test_extraction_is_an_array_of_shards_that_training_waits_for():
    plan = plan_jobs("s", CLIPS, len(CLIPS), RUNS, slurm_options(embed_shard_clips=70, array_parallelism=4), 1001)
    embed = plan.jobs[0]
    assert embed.kind is JobKind.embed and embed.is_array and plan.clips_per_task == 70
    assert embed.tasks[0] == ("0:70",) and embed.tasks[-1] == ("560:600",) and len(embed.tasks) == 9
    assert embed.throttle == 4  # the sweep's throttle holds for extraction tasks too
    assert all(job.after_ok == ("embed",) for job in plan.jobs if job.kind is JobKind.train)
    single = plan_jobs("s", CLIPS, len(CLIPS), RUNS, slurm_options(), 1001).jobs[0]
    assert single.tasks == (("0:600",),) and not single.is_array and single.throttle is None
    nothing = plan_jobs("s", [], len(CLIPS), RUNS, slurm_options(), 1001)
    assert [job.kind for job in nothing.jobs] == [JobKind.train, JobKind.collect]
    assert nothing.jobs[0].after_ok == ()


def test_shards_hold_only_missing_clips_and_fit_max_array_size():
    # clips 5, 6 and 31 missing of 40, shards of 10: only the shards 0-10 and 30-40 are extracted again
    assert shards([5, 6, 31], 40, 10) == (10, [(0, 10), (30, 40)])
    # 600 clips in shards of 7 would be 86 tasks: MaxArraySize 8 makes them 8 shards of 75 (indices 0-7)
    size, found = shards(CLIPS, len(CLIPS), 7, array_limit=8)
    assert size == 75 and found == [(k * 75, k * 75 + 75) for k in range(8)]
    with pytest.raises(PlanError, match="--embed-shard-clips 0"):
        shards(CLIPS, len(CLIPS), 0)

def sbatch_options(script: str) -> dict[str, str]:
    found = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line[len("#SBATCH --"):].partition("=")
            found[key] = shlex.split(value)[0] if value else ""
    return found


REQUEST = ("partition", "account", "qos", "cpus-per-task", "gpus-per-node", "mem", "time", "array", "job-name",
           "constraint")


def test_submit_and_scripts_request_the_same_jobs_with_the_same_resources(small_data, tmp_path):
    """Both render one plan: same jobs, same order, same resources, same dependencies."""
    manifest = prepare(write_sweep(tmp_path), tmp_path / "run", small_data, None, dedupe=True, overrides={})
    options = slurm_options(partition="gpu", cpu_partition="cpu", cpus=3, mem_gb=6, embed_cpus=2, account="lab",
                            qos="normal", array_parallelism=5, extra_sbatch={"constraint": "a100"},
                            embed_shard_clips=7)
    clips = len(set(manifest.record.clip_content.values()))
    plan = plan_jobs(manifest.sweep.name, list(range(clips)), clips, [c.run_id for c in manifest.runs], options, 5)
    run_dir = manifest.run_dir.path.resolve()
    through_submitit = slurm.scripts(plan, run_dir)
    through_templates = render_plan(plan, manifest, run_dir)
    assert len(plan.jobs) == 1 + 3 + 1  # the extraction array, 12 runs in 3 arrays of 4, collect
    # 80 clips in shards of 7 would be 12 tasks; MaxArraySize 5 makes them 5 shards of 16
    assert (plan.clips_per_task, len(plan.jobs[0].tasks)) == (16, 5) and plan.jobs[0].is_array

    submit_all = through_templates[SUBMIT_ALL]
    variables = dict(re.findall(r"^(\w+)=\$\(sbatch .*?(\S+\.sbatch)\)$", submit_all, re.MULTILINE))
    order = re.findall(r"^\w+=\$\(sbatch .*?(\S+\.sbatch)\)$", submit_all, re.MULTILINE)
    assert order == [script_name(job) for job in plan.jobs]
    for job in plan.jobs:
        ours = sbatch_options(through_submitit[job.name])
        theirs = sbatch_options(through_templates[script_name(job)])
        assert {k: ours.get(k) for k in REQUEST} == {k: theirs.get(k) for k in REQUEST}, job.name
        # dependencies: submitit's placeholders name jobs; submit-all.sh names the scripts' variables
        wanted = set(re.findall(r"<job id of ([^>]+)>", ours.get("dependency", "")))
        line = next(line for line in submit_all.splitlines()
                    if line.endswith(f"{script_name(job)})") and "=$(sbatch" in line)
        named = {variables[v] for v in re.findall(r"\$\{(\w+)\}", line)}
        assert named == {script_name(next(j for j in plan.jobs if j.name == name)) for name in wanted}, job.name
        assert ("kill-on-invalid-dep" in ours) == ("--kill-on-invalid-dep=yes" in line)
    assert sbatch_options(through_submitit["embed"])["partition"] == "cpu"
    assert sbatch_options(through_submitit["train:0"])["gpus-per-node"] == "1"


# Recorded on the project's test cluster (Slurm 22.05) started with --qos-max-submit 5, and with --no-accounting.
ASSOCIATIONS = "normal|\nnormal|\n"  # sacctmgr -n -P show assoc user=root format=DefaultQOS,MaxSubmit
QOS_TABLE = "normal|\nlimited|5\n"  # sacctmgr -n -P show qos format=Name,MaxSubmitPU
CONFIG = "AccountingStorageType   = accounting_storage/slurmdbd\nMaxArraySize            = 1001\n"
CONFIG_NO_ACCOUNTING = "AccountingStorageType   = accounting_storage/none\nMaxArraySize            = 40\n"


def test_the_clusters_limits_are_read_from_recorded_output():
    assert parse_config(CONFIG) == (1001, True) and parse_config(CONFIG_NO_ACCOUNTING) == (40, False)
    assert parse_limit(ASSOCIATIONS, QOS_TABLE, "limited") == 5
    assert parse_limit(ASSOCIATIONS, QOS_TABLE, None) is None  # the default QOS has no limit
    assert parse_limit("limited|\n", QOS_TABLE, None) == 5  # ... unless it is the limited one
    assert parse_limit("normal|3\n", QOS_TABLE, "limited") == 3  # the association's own limit is smaller
    with pytest.raises(SiteUnreadable, match="MaxArraySize"):
        parse_config("ClusterName = x\n")


def _memory(plan) -> dict:
    return {job.kind: job.resources.mem_gb for job in plan.jobs}


def test_memory_defaults_hold_their_floor_at_the_demo_size():
    """The demo's largest unit (272 clips): the defaults are what they always were (the golden scripts pin them)."""
    plan = plan_jobs("s", CLIPS, len(CLIPS), RUNS[:3], slurm_options(), 1001, samples=272)
    assert _memory(plan) == {JobKind.embed: 4.0, JobKind.train: 4.0, JobKind.collect: 2.0}
    assert _memory(plan_jobs("s", CLIPS, len(CLIPS), RUNS[:3], slurm_options(), 1001)) == _memory(plan)


def test_memory_defaults_grow_with_the_data():
    small = _memory(plan_jobs("s", CLIPS, len(CLIPS), RUNS[:3], slurm_options(), 1001, samples=272))
    large = _memory(plan_jobs("s", CLIPS, len(CLIPS), RUNS[:3], slurm_options(), 1001, samples=2_000_000))
    assert large[JobKind.train] > small[JobKind.train] and large[JobKind.collect] > small[JobKind.collect]
    many_cpus = _memory(plan_jobs("s", CLIPS, len(CLIPS), RUNS[:3], slurm_options(embed_cpus=16), 1001))
    assert many_cpus[JobKind.embed] > small[JobKind.embed]
    for kind, mem in large.items():  # whole half-gigabytes, as Slurm's --mem shows them
        assert mem * 2 == int(mem * 2), kind


def test_a_given_memory_always_wins():
    options = slurm_options(mem_gb=1.5, embed_mem_gb=3, collect_mem_gb=0.5, embed_cpus=16)
    for samples in (0, 272, 2_000_000):
        plan = plan_jobs("s", CLIPS, len(CLIPS), RUNS[:3], options, 1001, samples=samples)
        assert _memory(plan) == {JobKind.embed: 3.0, JobKind.train: 1.5, JobKind.collect: 0.5}
    # one kind given, the others still from the data
    plan = plan_jobs("s", CLIPS, len(CLIPS), RUNS[:3], slurm_options(mem_gb=1.5), 1001, samples=2_000_000)
    assert _memory(plan)[JobKind.train] == 1.5 and _memory(plan)[JobKind.collect] > 2.0
