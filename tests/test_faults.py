"""Faults and drift: killed tasks leave whole results or none, changed data and foreign caches are refused,
a changed sweep file is reported, and two submissions into one run directory do not mix."""

import fcntl
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from hpc_radr import embedding_cache, runner
from hpc_radr.atomic import write_atomic
from hpc_radr.cli import app
from hpc_radr.collect import collect
from hpc_radr.manifest import load
from hpc_radr.results import read_result
from hpc_radr.run_dir import RunDir

pytestmark = pytest.mark.training


@pytest.fixture()
def run_copy(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run", symlinks=True)


HALF = b'{"schema": 1, "run_id": "half'  # what _slow_write writes before it stalls


def _slow_write(path: str) -> None:
    def write(handle):
        handle.write(HALF)
        handle.flush()
        time.sleep(60)
        handle.write(b'"}')

    write_atomic(__import__("pathlib").Path(path), write)


def _half_written(target) -> list:
    """The temporary files beside ``target`` that hold the first half of what _slow_write writes."""
    found = []
    for tmp in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            if tmp.read_bytes().startswith(HALF):
                found.append(tmp)
        except FileNotFoundError:
            pass
    return found


def test_a_writer_killed_mid_write_leaves_no_result(run_copy):
    run_dir = RunDir(run_copy)
    run_id = load(run_dir).runs[0].run_id
    target = run_dir.result(run_id)
    target.unlink()
    child = multiprocessing.get_context("fork").Process(target=_slow_write, args=(str(target),))
    child.start()
    deadline = time.monotonic() + 30
    while not (half_written := _half_written(target)) and time.monotonic() < deadline:
        time.sleep(0.05)
    ended = child.exitcode  # None while the writer still runs
    os.kill(child.pid, signal.SIGKILL)  # before any assertion: a writer left alive would finish in 60 s
    child.join()
    assert half_written, (f"no temporary file .{target.name}.*.tmp beside {target} held the first half of the "
                          f"result within 30 s (writer exit code: {ended}): write_atomic no longer writes "
                          f"through a temporary file in the target's folder")
    assert not target.exists()
    assert read_result(run_dir, run_id).record is None
    found = collect(run_copy)
    assert (found.table.loc[found.table.run_id == run_id, "state"] == "missing").all()


def test_a_task_killed_during_training_leaves_nothing_and_reruns_cleanly(run_copy):
    run_dir = RunDir(run_copy)
    manifest = load(run_dir)
    position = 3
    run_id = manifest.runs[position].run_id
    run_dir.result(run_id).unlink()
    log = run_dir.log(run_id)
    log.unlink(missing_ok=True)
    command = [sys.executable, "-m", "hpc_radr", "run-task", str(run_copy), "--run", str(position)]
    task = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (log.exists() and "Epoch" in log.read_text(errors="replace")):
        time.sleep(0.1)
    assert log.exists(), "training never started"
    task.send_signal(signal.SIGKILL)
    task.wait()
    assert not run_dir.result(run_id).exists()
    assert runner.train(run_copy, [run_id]).trained == [run_id]
    assert read_result(run_dir, run_id).record is not None


def test_data_changed_after_submit_is_refused_at_extraction(small_data, tmp_path):
    from conftest import write_sweep

    from hpc_radr.submission import prepare

    data = shutil.copytree(small_data, tmp_path / "data")
    manifest = prepare(write_sweep(tmp_path), tmp_path / "run", data, None, dedupe=True, overrides={})
    victim = next((data / "train" / "RADR" / "high").iterdir())
    victim.write_bytes(victim.read_bytes()[:-2])
    with pytest.raises(embedding_cache.CacheError, match="changed since submit"):
        runner.embed(manifest.run_dir.path)
    assert not list(manifest.run_dir.cache.glob("*.npz"))


def test_a_cache_from_other_data_is_refused(run_copy):
    manifest = load(RunDir(run_copy))
    units = manifest.units
    mine = manifest.run_dir.cache_file(units["high_medium"].key)
    other = manifest.run_dir.cache_file(units["high_medium_low"].key)
    shutil.copyfile(other, mine)
    with pytest.raises(embedding_cache.CacheError, match="built from other data"):
        runner.ensure_embeddings(manifest, "high_medium")


def test_resubmit_says_the_sweep_file_changed_and_uses_the_frozen_one(run_copy, tmp_path):
    changed = tmp_path / "edited.toml"
    changed.write_text("name = 'edited'\n")
    manifest_path = run_copy / "manifest.json"
    raw = json.loads(manifest_path.read_text())
    raw["sweep_file"] = str(changed)
    manifest_path.write_text(json.dumps(raw))
    result = CliRunner().invoke(app, ["resubmit", str(run_copy), "--executor", "local", "--json"])
    assert result.exit_code == 0, result.output
    assert "changed since submit" in result.stderr
    assert json.loads(result.stdout)["trained"] == []


def test_a_second_submission_into_the_same_run_directory_is_refused(run_copy):
    with open(run_copy / ".submit.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = CliRunner().invoke(app, ["resubmit", str(run_copy), "--executor", "local"])
    assert result.exit_code == 2
    assert "another submission" in result.stderr


def test_a_failing_run_records_its_error_and_the_others_still_train(run_copy):
    run_dir = RunDir(run_copy)
    manifest = load(run_dir)
    broken = next(c.run_id for c in manifest.runs if c.dataset == "high_medium")
    healthy = next(c.run_id for c in manifest.runs if c.dataset == "high_medium_low")
    for run_id in (broken, healthy):
        run_dir.result(run_id).unlink()
    manifest.run_dir.cache_file(manifest.units["high_medium"].key).write_bytes(b"not an npz")
    with pytest.raises(runner.TaskFailed, match=broken):
        runner.train(run_copy, [broken, healthy])
    failure = json.loads(run_dir.failure(broken).read_text())
    assert "unreadable embedding cache" in failure["error"] and "Traceback" in failure["traceback"]
    assert read_result(run_dir, healthy).record is not None
    assert not run_dir.result(broken).exists()


def _descendants(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    children = [int(p) for p in open(path).read().split()] if os.path.exists(path) else []
    return children + [d for child in children for d in _descendants(child)]


def test_a_local_worker_killed_mid_run_is_reported_and_its_run_resubmitted(run_copy):
    """The OOM killer or a user's `kill -9` ends a local worker: submitit gets no outcome back. The submission
    says a worker ended without reporting, counts the run it was training as not done, and `resubmit`
    trains exactly what is missing."""
    from hpc_radr.executors.local import run_local
    from hpc_radr.submission import remaining

    run_dir = RunDir(run_copy)
    manifest = load(run_dir)
    victims = [c.run_id for c in manifest.runs[:3]]
    for run_id in victims:
        run_dir.result(run_id).unlink()
        run_dir.log(run_id).unlink(missing_ok=True)
    killed: list[int] = []

    def kill_when_training(phase: str, done: int, total: int) -> None:
        if phase == "training" and run_dir.log(victims[0]).exists() and not killed:  # a run has begun
            for pid in _descendants(os.getpid()):  # submitit's local controller and the worker it runs
                if "submitit.core._submit" in open(f"/proc/{pid}/cmdline").read().replace("\0", " "):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)

    work = remaining(manifest)
    assert sorted(work.pending_runs) == sorted(victims)
    outcome = run_local(work, workers=1, progress=kill_when_training)
    assert killed, "the worker was never seen training"
    # the runs it finished before the kill count; the one it was training and those after it do not
    assert outcome.failed and sorted(outcome.trained + outcome.failed) == sorted(victims)
    assert len(outcome.errors) == 1 and "ended without reporting back" in outcome.errors[0]
    assert not any(run_dir.result(r).exists() for r in outcome.failed)
    assert not list(run_dir.result(victims[0]).parent.glob(".*.tmp"))
    result = CliRunner().invoke(app, ["resubmit", str(run_copy), "--executor", "local", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(result.stdout)["trained"]) == sorted(outcome.failed)
