"""`status` and `collect` while tasks write results: a reader never sees half a result, counts only grow, and
results.csv is always a whole table, however reads and writes interleave. What is asserted holds for every
interleaving; which interleaving happens is up to the scheduler."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hpc_radr.collect import collect
from hpc_radr.manifest import load
from hpc_radr.results import read_result
from hpc_radr.run_dir import RunDir
from hpc_radr.status import status

pytestmark = pytest.mark.training

# Reads the test makes while the writer keeps rewriting results (its second phase), before telling it to stop.
READS = 25

# A separate process writing through the real path (results.write_result / write_failure), like tasks do:
# first every run once, some after a failed attempt and some twice (a forced rerun), then forced reruns,
# some of them failing (the old result stays), until told to stop.
WRITER = """
import json, sys
from pathlib import Path
from hpc_radr.run_dir import RunDir
from hpc_radr.results import write_failure, write_result

run_dir, records = RunDir(Path(sys.argv[1])), json.loads(Path(sys.argv[2]).read_text())
rewriting, stop = Path(sys.argv[3]), Path(sys.argv[4])
runs = list(records)

def failed(run_id, attempt):
    write_failure(run_dir, run_id, {"error": f"RuntimeError: attempt {attempt} failed", "log": "none"})

for k, run_id in enumerate(runs):
    if k % 3 == 0:
        failed(run_id, 1)
    write_result(run_dir, run_id, records[run_id])
    if k % 4 == 0:
        write_result(run_dir, run_id, records[run_id])
rewriting.touch()
k = 0
while not stop.exists():
    run_id = runs[k % len(runs)]
    if k % 5 == 0:
        failed(run_id, k)
    else:
        write_result(run_dir, run_id, records[run_id])
    k += 1
print(k)
"""

COLLECTOR = """
import sys
from hpc_radr.collect import collect
for _ in range(int(sys.argv[2])):
    found = collect(sys.argv[1])
    assert not found.problems, found.problems
"""


@pytest.fixture()
def emptied(trained_run, tmp_path) -> tuple[Path, Path]:
    """A copy of the trained run without any result; its real records saved aside for the writer."""
    run_copy = shutil.copytree(trained_run, tmp_path / "run", symlinks=True)
    run_dir = RunDir(run_copy)
    records = {}
    for config in load(run_dir).runs:
        record = read_result(run_dir, config.run_id).record
        assert record is not None
        records[config.run_id] = {k: v for k, v in record.items() if k not in ("schema", "run_id")}
        run_dir.result(config.run_id).unlink()
    shutil.rmtree(run_copy / "failures", ignore_errors=True)
    saved = tmp_path / "records.json"
    saved.write_text(json.dumps(records))
    return run_copy, saved


def _whole_table(path: Path, configurations: int) -> pd.DataFrame:
    table = pd.read_csv(path)
    assert sorted(table["index"]) == list(range(configurations))
    return table


def test_status_and_collect_while_results_are_written(emptied, tmp_path):
    run_copy, records = emptied
    configurations = len(load(RunDir(run_copy)).configurations)
    rewriting, stop = tmp_path / "rewriting", tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(run_copy), str(records), str(rewriting), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    completed = [0]  # completed configurations, in the order status and collect saw them
    reads = 0
    try:
        while True:
            writer_ended = writer.poll() is not None
            report = status(run_copy)
            assert report.problems == []  # never a half-written or unreadable result
            completed.append(report.counts.get("completed", 0))
            found = collect(run_copy)
            assert found.problems == []
            table = _whole_table(run_copy / "results.csv", configurations)
            assert (table["state"] == "completed").sum() == (found.table["state"] == "completed").sum()
            completed.append(int((found.table["state"] == "completed").sum()))
            assert completed == sorted(completed), completed  # a result, once there, never goes away
            reads += rewriting.exists()
            if reads == READS:
                stop.touch()
            if writer_ended:
                break
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    print(f"{len(completed) // 2 - 1} reads; the writer rewrote {out.strip()} results after writing each once")
    assert completed[-1] == configurations
    assert found.missing == [] and found.failed == []


def test_two_collects_at_once_both_succeed_and_leave_a_whole_table(trained_run, tmp_path):
    run_copy = shutil.copytree(trained_run, tmp_path / "run", symlinks=True)
    configurations = len(load(RunDir(run_copy)).configurations)
    collectors = [subprocess.Popen([sys.executable, "-c", COLLECTOR, str(run_copy), "8"], stderr=subprocess.PIPE,
                                   text=True) for _ in range(2)]
    for collector in collectors:
        _, err = collector.communicate(timeout=300)
        assert collector.returncode == 0, err
    table = _whole_table(run_copy / "results.csv", configurations)
    assert (table["state"] == "completed").all()
    assert len(pd.read_parquet(run_copy / "results.parquet")) == configurations
    assert not list(run_copy.rglob("*.tmp"))
