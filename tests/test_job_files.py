"""How a task ended, from its own files (clusters without accounting): submitit's result pickle, or the line
slurmstepd writes into the task's stderr when it kills it. The log lines are as Slurm 22.05 writes them."""

from __future__ import annotations

import pickle

import pytest

from hpc_radr.executors.job_files import ended, folder, from_log

CANCELLED = "slurmstepd: error: *** JOB 17 ON lab01 CANCELLED AT 2026-12-03T13:44:09 ***\n"
TIME_LIMIT = "slurmstepd: error: *** JOB 18 ON lab01 CANCELLED AT 2026-12-03T13:46:10 DUE TO TIME LIMIT ***\n"
STEP_TIME_LIMIT = "slurmstepd: error: *** STEP 18.0 ON lab01 CANCELLED AT 2026-12-03T13:46:10 DUE TO TIME LIMIT ***\n"
PREEMPTED = "slurmstepd: error: *** JOB 19 ON lab01 CANCELLED AT 2026-12-03T13:47:00 DUE TO PREEMPTION ***\n"
OOM = ("slurmstepd: error: Detected 1 oom-kill event(s) in StepId=20.batch. Some of your processes may have been "
       "killed by the cgroup out-of-memory handler.\n")


@pytest.mark.parametrize(("log", "state"), [(CANCELLED, "cancelled"), (TIME_LIMIT, "timeout"),
                                            (STEP_TIME_LIMIT, "timeout"), (PREEMPTED, "cancelled"),
                                            (OOM, "out_of_memory"), ("Traceback ...\nValueError: x\n", None),
                                            ("", None)])
def test_slurmstepd_lines_name_how_a_task_was_killed(log, state):
    assert from_log("submitit INFO (2026-12-03 13:44:01) - Starting with JobEnvironment(...)\n" + log) == state


def write_task(tmp_path, name: str, outcome=None, log: str = ""):
    task = tmp_path / name
    task.mkdir()
    (task / f"{name}_0_log.err").write_text(log)
    if outcome is not None:
        (task / f"{name}_0_result.pkl").write_bytes(pickle.dumps(outcome))
    return task


def test_a_task_folder_says_completed_failed_killed_or_never_started(tmp_path):
    assert folder(tmp_path, "31", 2).name == "31_2" and folder(tmp_path, "30", None).name == "30"
    assert ended(write_task(tmp_path, "31_0", ("success", ["run"]))) == "completed"
    assert ended(write_task(tmp_path, "31_1", ("error", "Traceback ..."))) == "failed"
    assert ended(write_task(tmp_path, "31_2", log=TIME_LIMIT)) == "timeout"
    assert ended(write_task(tmp_path, "31_3")) is None  # started; nothing says how it ended
    assert ended(tmp_path / "31_4") == "missing"  # never started
    queued = tmp_path / "31_6"
    queued.mkdir()
    (queued / "31_6_submitted.pkl").write_bytes(b"")  # submitit writes the call at submission
    assert ended(queued) == "missing"
    torn = write_task(tmp_path, "31_5", log=CANCELLED)
    (torn / "31_5_0_result.pkl").write_bytes(b"\x80\x04 torn")
    assert ended(torn) == "cancelled"  # a torn pickle says nothing: the log does
