"""status on recorded Slurm output, without a cluster: fake `sacct` and `squeue` print what Slurm 22.05 prints,
and task folders are laid out as submitit and slurmstepd leave them. The no-accounting case in particular:
finished tasks must never read as cancelled, before or after they leave squeue."""

from __future__ import annotations

import os
import pickle

import pytest
from conftest import write_sweep
from test_report import record

from hpc_radr.results import write_failure, write_result
from hpc_radr.status import status
from hpc_radr.submission import prepare
from hpc_radr.submission_log import record_submission

EMBED, TRAIN = "71", "72"
DISABLED = "Slurm accounting storage is disabled"
TIME_LIMIT = "slurmstepd: error: *** JOB 80 ON lab01 CANCELLED AT 2026-12-03T13:46:10 DUE TO TIME LIMIT ***\n"


def fake_slurm(folder, monkeypatch, squeue: str, sacct: str | None) -> None:
    """``sacct`` prints ``sacct`` (None: accounting is disabled, exit 1); ``squeue`` prints ``squeue``."""
    folder.mkdir()
    (folder / "squeue.out").write_text(squeue)
    (folder / "squeue").write_text(f'#!/bin/sh\ncat "{folder}/squeue.out"\n')
    if sacct is None:
        (folder / "sacct").write_text(f'#!/bin/sh\necho "{DISABLED}" >&2\nexit 1\n')
    else:
        (folder / "sacct.out").write_text(sacct)
        (folder / "sacct").write_text(f'#!/bin/sh\ncat "{folder}/sacct.out"\n')
    for name in ("squeue", "sacct"):
        os.chmod(folder / name, 0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")


def task(run_dir, name: str, outcome=None, log: str = "", started: bool = True) -> None:
    folder = run_dir.submitit / name
    folder.mkdir(parents=True)
    (folder / f"{name}_submitted.pkl").write_bytes(b"")  # submitit writes it for every task at submission
    if started:
        (folder / f"{name}_0_log.err").write_text(log)
    if outcome is not None:
        (folder / f"{name}_0_result.pkl").write_bytes(pickle.dumps(outcome))


@pytest.fixture
def submitted(small_data, tmp_path):
    """A 4-run sweep submitted as one embedding job and a 4-task array (recorded as submit records it).
    Task 0 completed, 1 failed, 2 timed out, 3 never started (cancelled while queued)."""
    sweep = write_sweep(tmp_path, modes='["linear"]', ratios="[0.0, 1.0]", seeds="[1, 2]",
                        datasets='[[datasets]]\nname = "high_medium"\ntiers = ["high", "medium"]\n')
    manifest = prepare(sweep, tmp_path / "run", small_data, None, dedupe=True, overrides={})
    run_dir = manifest.run_dir
    runs = [c.run_id for c in manifest.runs]
    assert len(runs) == 4
    record_submission(run_dir, {"kind": "embed", "name": "embed:high_medium", "job_id": EMBED, "array": False,
                                "tasks": [["high_medium"]]})
    record_submission(run_dir, {"kind": "train", "name": "train:0", "job_id": TRAIN, "array": True,
                                "tasks": [[r] for r in runs]})
    task(run_dir, EMBED, ("success", ["high_medium"]))
    write_result(run_dir, runs[0], record(manifest.run(runs[0]), {"recall": 0.5, "precision": 0.9, "auprc": 0.8}))
    task(run_dir, f"{TRAIN}_0", ("success", None))
    write_failure(run_dir, runs[1], {"error": "RuntimeError: boom", "log": "x.log"})
    task(run_dir, f"{TRAIN}_1", ("error", "Traceback ... RuntimeError: boom"))
    task(run_dir, f"{TRAIN}_2", log=TIME_LIMIT)
    task(run_dir, f"{TRAIN}_3", started=False)
    return manifest, runs


def states(report) -> dict[str, str]:
    return {c.run_id: c.state for c in report.configurations}


def test_without_accounting_after_the_jobs_left_squeue_the_files_tell(submitted, tmp_path, monkeypatch):
    manifest, runs = submitted
    fake_slurm(tmp_path / "bin", monkeypatch, squeue="", sacct=None)  # MinJobAge passed: squeue knows nothing
    report = status(manifest.run_dir.path, manifest)
    assert report.accounting is False
    assert states(report) == {runs[0]: "completed", runs[1]: "failed", runs[2]: "timeout", runs[3]: "cancelled"}
    jobs = {job.name: job.counts for job in report.jobs}
    assert jobs == {"embed:high_medium": {"completed": 1},
                    "train:0": {"completed": 1, "failed": 1, "timeout": 1, "cancelled": 1}}
    assert not any("embedding job" in p for p in report.problems)


def test_without_accounting_while_squeue_still_lists_the_ended_tasks(submitted, tmp_path, monkeypatch):
    """squeue -t all keeps ended tasks for MinJobAge: its word counts; a finished task is never 'cancelled'."""
    manifest, runs = submitted
    squeue = (f"{EMBED}|COMPLETED|None\n{TRAIN}_0|COMPLETED|None\n{TRAIN}_1|FAILED|NonZeroExitCode\n"
              f"{TRAIN}_2|TIMEOUT|TimeLimit\n{TRAIN}_3|CANCELLED|None\n")
    fake_slurm(tmp_path / "bin", monkeypatch, squeue=squeue, sacct=None)
    report = status(manifest.run_dir.path, manifest)
    assert states(report) == {runs[0]: "completed", runs[1]: "failed", runs[2]: "timeout", runs[3]: "cancelled"}
    assert {job.name: job.counts for job in report.jobs}["train:0"] == \
        {"completed": 1, "failed": 1, "timeout": 1, "cancelled": 1}


def test_a_live_array_with_accounting_off_keeps_its_queued_and_running_tasks(submitted, tmp_path, monkeypatch):
    manifest, runs = submitted
    squeue = (f"{TRAIN}_0|COMPLETED|None\n{TRAIN}_2|RUNNING|None\n{TRAIN}_[3]|PENDING|JobArrayTaskLimit\n")
    fake_slurm(tmp_path / "bin", monkeypatch, squeue=squeue, sacct=None)
    report = status(manifest.run_dir.path, manifest)
    assert states(report)[runs[2]] == "running" and states(report)[runs[3]] == "pending"
    assert states(report)[runs[1]] == "failed"  # ended and left squeue first: its files say it failed
    train = next(job for job in report.jobs if job.name == "train:0")
    assert train.counts == {"completed": 1, "failed": 1, "running": 1, "pending": 1}
    assert train.waiting_for == ["JobArrayTaskLimit"]


def test_with_accounting_a_task_missing_from_a_known_array_was_cancelled_before_it_started(submitted, tmp_path,
                                                                                           monkeypatch):
    manifest, runs = submitted
    sacct = f"{EMBED}|COMPLETED\n{TRAIN}_0|COMPLETED\n{TRAIN}_1|FAILED\n{TRAIN}_2|TIMEOUT\n"
    fake_slurm(tmp_path / "bin", monkeypatch, squeue="", sacct=sacct)
    report = status(manifest.run_dir.path, manifest)
    assert report.accounting is True
    assert states(report) == {runs[0]: "completed", runs[1]: "failed", runs[2]: "timeout", runs[3]: "cancelled"}
    assert report.configurations[3].scheduler_state.startswith("CANCELLED before it started")


def test_a_failed_task_of_the_extraction_array_is_named_with_its_clips(small_data, tmp_path, monkeypatch):
    sweep = write_sweep(tmp_path, modes='["linear"]', ratios="[0.0]", seeds="[1]",
                        datasets='[[datasets]]\nname = "high_medium"\ntiers = ["high", "medium"]\n')
    manifest = prepare(sweep, tmp_path / "run", small_data, None, dedupe=True, overrides={})
    run_dir = manifest.run_dir
    record_submission(run_dir, {"kind": "embed", "name": "embed", "job_id": EMBED, "array": True,
                                "tasks": [["0:40"], ["40:74"]]})
    task(run_dir, f"{EMBED}_0", ("success", {"clips": 40, "extracted": 40}))
    task(run_dir, f"{EMBED}_1", ("error", "Traceback ... CacheError: the data changed since submit"))
    run_dir.clips.mkdir()
    run_dir.clip_index.write_text('{"clips": {' + ", ".join(f'"k{k}": ["s", {k}, {k + 1}]' for k in range(40)) + "}}")
    fake_slurm(tmp_path / "bin", monkeypatch, squeue="", sacct=None)
    report = status(run_dir.path, manifest)
    assert {job.name: job.counts for job in report.jobs} == {"embed": {"completed": 1, "failed": 1}}
    assert [p for p in report.problems if "embedding job" in p] == [
        f"embedding job {EMBED} (embed task 1, clips 40:74) ended FAILED (accounting is off; from the task's own "
        "files): its training arrays do not run; log "
        f"{run_dir.submitit / f'{EMBED}_1' / f'{EMBED}_1_0_log.err'}"]
    assert report.clips == {"stored": 40, "total": 74} and report.as_dict()["clips"] == report.clips
