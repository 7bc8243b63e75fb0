"""Large run directories for the scale figures, built through hpc-radr's own code without training anything.

* ``status_run``: a sweep with many seeds (>= 1,000 runs) prepared with ``hpc_radr.submission.prepare``, a
  ``submissions.jsonl`` entry like ``hpc_radr.workflow.submit_slurm`` records (one training array of one
  run per task, plus its embedding job), result files for the tasks Slurm says completed, a few failure
  records, and fake ``sacct`` / ``squeue`` executables (first on PATH) that print recorded output in the exact
  formats Slurm 22.05 prints for the commands ``hpc_radr.executors.slurm_state`` runs.
* ``collect_run``: a sweep with >= 10,000 runs, every one with a result file copied from one real result
  (``run_id`` and ``configuration`` rewritten).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from hpc_radr.demo_data import DemoSize, generate
from hpc_radr.results import write_failure
from hpc_radr.submission_log import record_submission

TINY = DemoSize(per_tier=2, negatives=4, test_per_tier=2, test_negatives=4)
RUNS_PER_SEED = 28  # 2 datasets x (1 shared ratio-0.0 run + 2 ratios x 3 modes) x 2 focal settings
TRAIN_JOB, EMBED_JOB = "4242", "4241"

# The user's own sweep file, renamed and with more seeds: the scale figures measure the real grid's shape.
USER_SWEEP = Path(__file__).resolve().parent.parent / "jobs" / "imbalance_regularization.toml"


def _sweep_text(name: str, seeds: list[int]) -> str:
    text, renamed = re.subn(r'(?m)^name = "imbalance_regularization"$', f'name = "{name}"', USER_SWEEP.read_text())
    text, reseeded = re.subn(r"(?m)^seeds = \[.*\]$", f"seeds = {seeds}", text)
    if (renamed, reseeded) != (1, 1):
        raise RuntimeError(f"{USER_SWEEP}: expected one top-level name and one seeds line to rewrite")
    return text


def tiny_data(folder: Path) -> Path:
    if not (folder / "README.txt").exists():
        generate(folder, TINY)
    return folder


def _prepare(work: Path, name: str, runs: int, data: Path):
    from hpc_radr.submission import prepare

    seeds = list(range(1, math.ceil(runs / RUNS_PER_SEED) + 1))
    sweep = work / f"{name}.toml"
    sweep.write_text(_sweep_text(name, seeds))
    return prepare(sweep, work / name, data, None, dedupe=True, overrides={}, write=True)


def _result(template: dict, run_id: str, config, shared_by: list[int]) -> bytes:
    record = dict(template, run_id=run_id, configuration=config.as_dict(), shared_by=shared_by)
    return (json.dumps(record, indent=2) + "\n").encode()


def _write_results(manifest, template: dict, run_ids: set[str]) -> None:
    shared: dict[str, list[int]] = {}
    for config in manifest.configurations:
        shared.setdefault(config.run_id, []).append(config.index)
    folder = manifest.run_dir.path / "results"
    folder.mkdir(parents=True, exist_ok=True)
    for config in manifest.runs:
        if config.run_id in run_ids:
            (folder / f"{config.run_id}.json").write_bytes(_result(template, config.run_id, config,
                                                                  shared[config.run_id]))


# Slurm 22.05, `sacct -X -n -P -o JobID,State -j ...`: one line per array task that has a job record (ended or
# started), pending tasks still folded into the array's own record `JOB_[a-b%throttle]`, "CANCELLED by UID".
# `squeue --array -h -o %i|%T|%r -j ...`: one line per queued or running task (--array expands pending ones),
# with the reason a task waits (None when it runs).
# The recorded array's task states by index range: (first index past the range, Slurm state); the rest pend.
TASK_RANGES = ((700, "COMPLETED"), (740, "FAILED"), (760, "CANCELLED by 0"), (780, "TIMEOUT"),
               (800, "OUT_OF_MEMORY"), (832, "RUNNING"), (900, "COMPLETED"))


def _task_states(n: int) -> dict[int, str]:
    return {k: next((state for end, state in TASK_RANGES if k < end), "PENDING") for k in range(n)}


def status_run(work: Path, template: dict, runs: int = 1000, throttle: int = 32) -> tuple[Path, Path, dict]:
    """The run directory, the folder of fake Slurm executables, and what was recorded (counts per state)."""
    work.mkdir(parents=True, exist_ok=True)
    manifest = _prepare(work, "status1000", runs, tiny_data(work / "tiny-data"))
    run_ids = [c.run_id for c in manifest.runs]
    states = _task_states(len(run_ids))
    _write_results(manifest, template, {run_ids[k] for k, s in states.items() if s == "COMPLETED"})
    for k, state in states.items():
        if state == "FAILED" and k % 2 == 0:  # half of the failed tasks got to write their failure record
            write_failure(manifest.run_dir, run_ids[k], {"error": "RuntimeError: out of disk",
                                                         "log": str(manifest.run_dir.log(run_ids[k]))})
    record_submission(manifest.run_dir, {"kind": "embed", "name": "embed", "job_id": EMBED_JOB,
                                         "array": False, "tasks": [["0:2000"]]})
    record_submission(manifest.run_dir, {"kind": "train", "name": "train:0", "job_id": TRAIN_JOB, "array": True,
                                         "tasks": [[r] for r in run_ids]})

    pending = [k for k, s in states.items() if s == "PENDING"]
    sacct = [f"{EMBED_JOB}|COMPLETED"]
    sacct += [f"{TRAIN_JOB}_{k}|{s}" for k, s in states.items() if s != "PENDING"]
    sacct.append(f"{TRAIN_JOB}_[{pending[0]}-{pending[-1]}%{throttle}]|PENDING")
    squeue = [f"{TRAIN_JOB}_{k}|RUNNING|None" for k, s in states.items() if s == "RUNNING"]
    squeue += [f"{TRAIN_JOB}_{k}|PENDING|JobArrayTaskLimit" for k in pending]
    fake = work / "fake-slurm"
    fake.mkdir(exist_ok=True)
    calls = fake / "calls.log"
    for command, lines in (("sacct", sacct), ("squeue", squeue)):
        (fake / f"{command}.out").write_text("\n".join(lines) + "\n")
        script = fake / command
        script.write_text(f'#!/bin/sh\necho "{command} $*" >> "{calls}"\ncat "{fake / (command + ".out")}"\n')
        os.chmod(script, 0o755)
    recorded = {}
    for state in states.values():
        recorded[state] = recorded.get(state, 0) + 1
    return manifest.run_dir.path, fake, {"tasks": len(run_ids), "configurations": len(manifest.configurations),
                                         "slurm_states": recorded, "sacct_lines": len(sacct),
                                         "squeue_lines": len(squeue)}


def collect_run(work: Path, template: dict, runs: int = 10_000) -> tuple[Path, dict]:
    work.mkdir(parents=True, exist_ok=True)
    manifest = _prepare(work, "collect10000", runs, tiny_data(work / "tiny-data"))
    _write_results(manifest, template, {c.run_id for c in manifest.runs})
    return manifest.run_dir.path, {"runs": len(manifest.runs), "configurations": len(manifest.configurations),
                                   "result_files": len(list((manifest.run_dir.path / "results").glob("*.json")))}
