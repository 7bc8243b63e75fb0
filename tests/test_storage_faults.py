"""A full disk or a read-only folder, on real tiny and read-only file systems (tests/mounts.py): every command
says which path failed and why in one line, exits non-zero, and leaves no partial file; the previous whole
files stay as they were and the lost run trains normally once there is space again."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_sweep
from mounts import fill, mount_namespace, read_only, tmpfs

from hpc_radr import atomic
from hpc_radr.collect import collect
from hpc_radr.manifest import load
from hpc_radr.results import read_failure, read_result
from hpc_radr.run_dir import RunDir
from hpc_radr.status import status
from hpc_radr.submission import remaining

HPC_RADR = [sys.executable, "-m", "hpc_radr"]


@pytest.fixture(scope="module")
def mounts():
    return mount_namespace()


@pytest.fixture()
def run_copy(trained_run, tmp_path) -> Path:
    return shutil.copytree(trained_run, tmp_path / "run", symlinks=True)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _assert_one_clear_error(stderr: str, *needles: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = _error_lines(stderr)
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _left_over_tmp(folder: Path) -> list[Path]:
    return list(folder.rglob("*.tmp"))


def _files(folder: Path) -> dict[str, int]:
    """Every file below ``folder`` with its modification time in ns: what changes when anything is written."""
    return {str(p.relative_to(folder)): p.lstat().st_mtime_ns for p in folder.rglob("*")}


# -- write_atomic at the steps a tmpfs cannot make fail -------------------------------------------------------

@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_write_atomic_keeps_the_old_file_when_fsync_or_rename_fails(tmp_path, monkeypatch, step):
    """ENOSPC at fsync (NFS, quotas) or rename (a full directory block) cannot be provoked on a tmpfs, where
    both always succeed; the write itself fails for real in the tests below."""
    target = tmp_path / "results.csv"
    target.write_bytes(b"old, whole\n")

    def no_space(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), *([args[0]] if step == "replace" else []))

    monkeypatch.setattr(atomic.os, step, no_space)
    with pytest.raises(OSError) as raised:
        atomic.write_atomic(target, lambda handle: handle.write(b"new\n"))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert target.read_bytes() == b"old, whole\n"
    assert sorted(tmp_path.iterdir()) == [target]


# -- run-task -------------------------------------------------------------------------------------------------

@pytest.mark.training
def test_run_task_on_a_full_disk_records_nothing_and_the_run_trains_later(mounts, run_copy):
    """results/ and failures/ both full: neither the result nor the failure record can be written, and the
    failure record's own ENOSPC must not hide the run's."""
    run_dir = RunDir(run_copy)
    manifest = load(run_dir)
    position = 2
    run_id, untried = manifest.runs[position].run_id, manifest.runs[position + 1].run_id
    run_dir.result(run_id).unlink()
    results, failures = run_copy / "results", run_copy / "failures"
    failures.mkdir(exist_ok=True)
    inside = mounts.run(
        f"{tmpfs(results)}\n{tmpfs(failures)}\n{fill(results)}\n{fill(failures)}",
        [*HPC_RADR, "run-task", str(run_copy), "--run", str(position), "--run", str(position + 1)],
        after=f"ls -A {results} {failures}")
    assert inside.returncode != 0
    line = _assert_one_clear_error(inside.stderr, str(run_dir.result(run_id)), "No space left on device",
                                   "no failure record", untried, "resubmit")
    assert "disk or quota full" in line
    assert inside.stdout == ""
    assert sorted(inside.after.split()) == sorted([f"{results}:", f"{failures}:", ".fill", ".fill"]), inside.after

    # the mounts are gone: the run is missing (not failed, not half there) and trains normally
    assert not run_dir.result(run_id).exists() and read_failure(run_dir, run_id) is None
    report = status(run_copy)
    assert report.problems == []
    assert {c.state for c in report.configurations if c.run_id == run_id} == {"missing"}
    again = subprocess.run([*HPC_RADR, "run-task", str(run_copy), "--run", str(position)], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["trained"] == [run_id]
    assert read_result(run_dir, run_id).record is not None
    assert not _left_over_tmp(run_copy)


@pytest.mark.training
def test_run_task_into_a_read_only_results_folder_records_the_failure(mounts, run_copy):
    run_dir = RunDir(run_copy)
    run_id = load(run_dir).runs[5].run_id
    run_dir.result(run_id).unlink()
    results = run_copy / "results"
    before = sorted(p.name for p in results.iterdir())
    inside = mounts.run(read_only(results), [*HPC_RADR, "run-task", str(run_copy), "--run", "5"])
    assert inside.returncode != 0
    _assert_one_clear_error(inside.stderr, str(run_dir.result(run_id)), "Read-only file system")
    assert sorted(p.name for p in results.iterdir()) == before  # no result, no temporary file
    failure = read_failure(run_dir, run_id)  # failures/ was writable: the error is on record
    assert failure is not None and "Read-only file system" in failure["error"]
    row = next(c for c in status(run_copy).configurations if c.run_id == run_id)
    assert row.state == "failed" and "Read-only file system" in row.error
    assert remaining(load(run_dir)).pending_runs == [run_id]  # what resubmit would run


LOCAL_RUN = """
import json, sys
from pathlib import Path
from hpc_radr.executors.local import run_local
from hpc_radr.manifest import load
from hpc_radr.run_dir import RunDir
from hpc_radr.submission import remaining
print(json.dumps(run_local(remaining(load(RunDir(Path(sys.argv[1])))), workers=1).__dict__))
"""


@pytest.mark.training
def test_a_local_worker_that_meets_a_full_disk_stops_and_says_why(mounts, run_copy):
    """The disk fills after submit checked it; here results/ is full from the start and the executor is called
    directly (submit's own check would refuse). The worker stops after its first run instead of training all
    twelve, and the one-line reason comes back to the submitting process, which prints it."""
    results = run_copy / "results"
    inside = mounts.run(f"{tmpfs(results)}\n{fill(results)}", [sys.executable, "-c", LOCAL_RUN, str(run_copy)],
                        after=f"ls -A {results}")
    assert inside.returncode == 0, inside.stderr
    outcome = json.loads(inside.stdout)
    first = load(RunDir(run_copy)).runs[0].run_id
    assert outcome["trained"] == [] and len(outcome["failed"]) == 12
    assert len(outcome["errors"]) == 1
    assert str(RunDir(run_copy).result(first)) in outcome["errors"][0]
    assert "No space left on device" in outcome["errors"][0] and "11 other runs" in outcome["errors"][0]
    assert inside.after.split() == [".fill"]
    assert [p.stem for p in (run_copy / "failures").iterdir()] == [first]  # the only run it tried


# -- submit and resubmit ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_submit_into_a_folder_that_cannot_be_written_submits_nothing(mounts, small_data, tmp_path, fault):
    sweep = write_sweep(tmp_path, epochs=1)
    parent = tmp_path / "scratch"
    parent.mkdir()
    if fault == "read-only":
        setup, expected = read_only(parent), "Read-only file system"
        run_dir = parent / "sweeps" / "small"  # neither exists: the nearest existing folder is checked
    else:
        setup, expected = f"{tmpfs(parent)}\n{fill(parent)}", "No space left on device"
        run_dir = parent / "small"
    work = tmp_path / "cwd"
    work.mkdir()
    inside = mounts.run(setup, [*HPC_RADR, "submit", str(sweep), "--data", str(small_data), "--run-dir",
                                str(run_dir), "--executor", "local", "--workers", "1"],
                        after=f"ls -A {parent}", cwd=work)
    assert inside.returncode == 2, inside.stdout + inside.stderr
    _assert_one_clear_error(inside.stderr, f"cannot write into {parent}", expected, "nothing was submitted")
    assert inside.after.split() == ([] if fault == "read-only" else [".fill"])
    assert list(parent.iterdir()) == [] and list(work.iterdir()) == []


@pytest.mark.training
def test_resubmit_into_a_read_only_run_directory_submits_nothing(mounts, run_copy):
    run_dir = RunDir(run_copy)
    run_id = load(run_dir).runs[0].run_id
    run_dir.result(run_id).unlink()
    results = run_copy / "results"
    before = _files(run_copy)
    inside = mounts.run(read_only(results), [*HPC_RADR, "resubmit", str(run_copy), "--executor", "local"])
    assert inside.returncode == 2
    _assert_one_clear_error(inside.stderr, f"cannot write into {results}", "Read-only file system",
                            "nothing was submitted")
    assert _files(run_copy) == before


# -- collect -----------------------------------------------------------------------------------------------------

@pytest.fixture()
def collected(run_copy) -> tuple[Path, str, dict[str, str]]:
    """A collected run directory in which one result then vanished, so a new collect would write other tables."""
    collect(run_copy)
    gone = load(RunDir(run_copy)).runs[0].run_id
    RunDir(run_copy).result(gone).unlink()
    tables = {name: _sha256(run_copy / name) for name in ("results.csv", "results.parquet", "summary.csv")}
    return run_copy, gone, tables


@pytest.mark.training
def test_collect_in_a_read_only_run_directory_keeps_the_old_tables(mounts, collected):
    run_copy, _, tables = collected
    inside = mounts.run(read_only(run_copy), [*HPC_RADR, "collect", str(run_copy)])
    assert {name: _sha256(run_copy / name) for name in tables} == tables
    assert not _left_over_tmp(run_copy)
    assert inside.returncode == 2
    _assert_one_clear_error(inside.stderr, str(run_copy / "results.csv"), "Read-only file system")


@pytest.mark.training
def test_collect_on_a_full_disk_keeps_the_old_tables(mounts, collected, tmp_path):
    """The run directory's records on a tmpfs filled to the last block (collect reads nothing else)."""
    run_copy, _, tables = collected
    full = tmp_path / "full"
    full.mkdir()
    copy = " && ".join(f"cp -a {run_copy / name} {full}/" for name in
                       ("manifest.json", "sweep.toml", "results", *tables))
    listing = f"cd {full} && sha256sum {' '.join(tables)} && find . -name '*.tmp'"
    inside = mounts.run(f"{tmpfs(full, '512k')}\n{copy}\n{fill(full)}", [*HPC_RADR, "collect", str(full)],
                        after=listing)
    lines = [line.split() for line in inside.after.splitlines()]
    assert {name: digest for digest, name in (line for line in lines if len(line) == 2)} == tables
    assert [line for line in lines if len(line) != 2] == [], "temporary files left"
    assert inside.returncode == 2
    _assert_one_clear_error(inside.stderr, str(full / "results.csv"), "No space left on device",
                            "disk or quota full")
