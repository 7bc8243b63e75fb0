"""Per-run result and failure records: what a task writes, and how later steps tell whole from broken.

A result is valid only if it parses, carries the current schema and names the run it is stored under;
anything else is reported as skipped with the reason, never counted.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from hpc_radr.atomic import write_json
from hpc_radr.run_dir import RunDir

if TYPE_CHECKING:
    import numpy as np  # imported where scores are decoded: status never needs it

RESULT_SCHEMA = 1


class State(StrEnum):
    """The one set of states of a run (and of a Slurm task), in the order counts are shown."""

    completed = "completed"
    running = "running"
    pending = "pending"
    failed = "failed"
    cancelled = "cancelled"
    timeout = "timeout"
    out_of_memory = "out_of_memory"
    missing = "missing"
    unknown = "unknown"  # a Slurm task that neither Slurm nor its files can place yet


ACTIVE = (State.pending, State.running)
TEST_METRICS = ("auprc", "auroc", "precision", "recall", "f1", "precision_opt", "recall_opt", "f1_opt",
                "threshold_opt", "tp", "fp", "tn", "fn")


@dataclass(frozen=True)
class RunScores:
    """A run's score per clip (BirdNET's sigmoid of the head's logit), kept so that any metric can be computed
    after the sweep: on the test set (in the test cache's order, the same for every run of a run directory) and
    on the validation data its threshold may be chosen on. ``validation_source`` is "held_out_split" (BirdNET's
    split of the training data, the honest protocol) or "test_set" (the birdnet protocol validates on the test
    set: a threshold chosen there is optimistic).

    Stored as base64 of little-endian float32 (scores) and uint8 (labels): exact, and about 5.4 characters per
    clip, so 10,000 test clips add 54 KB to a result file rather than about 200 KB of decimal text."""

    test: np.ndarray
    test_positive: np.ndarray
    validation: np.ndarray
    validation_positive: np.ndarray
    validation_source: str

    def as_record(self) -> dict:
        return {"format": "base64 float32-le scores, uint8 labels", "test": _encode(self.test, "<f4"),
                "test_positive": _encode(self.test_positive, "u1"), "validation": _encode(self.validation, "<f4"),
                "validation_positive": _encode(self.validation_positive, "u1"),
                "validation_source": self.validation_source}


def _encode(values: np.ndarray, dtype: str) -> str:
    import numpy as np

    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def _decode(text: str, dtype: str) -> np.ndarray:
    import numpy as np

    return np.frombuffer(base64.b64decode(text, validate=True), dtype=dtype)


def run_scores(record: dict) -> RunScores | None:
    """The run's per-clip scores; None for a result written before they were kept, or whose scores do not
    decode into arrays of matching lengths (then no metric is computed from them)."""
    stored = record.get("scores")
    if not isinstance(stored, dict):
        return None
    try:
        scores = RunScores(_decode(stored["test"], "<f4"), _decode(stored["test_positive"], "u1").astype(bool),
                           _decode(stored["validation"], "<f4"),
                           _decode(stored["validation_positive"], "u1").astype(bool), str(stored["validation_source"]))
    except (KeyError, TypeError, ValueError):  # binascii.Error is a ValueError
        return None
    if len(scores.test) != len(scores.test_positive) or len(scores.validation) != len(scores.validation_positive):
        return None
    return scores


@dataclass(frozen=True)
class ResultRead:
    """A run's result as found on disk: ``record`` when valid, else ``problem`` says why not."""

    run_id: str
    record: dict | None
    problem: str | None


def read_result(run_dir: RunDir, run_id: str) -> ResultRead:
    path = run_dir.result(run_id)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return ResultRead(run_id, None, None)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return ResultRead(run_id, None, f"{path}: corrupt result ({err})")
    if not isinstance(record, dict) or record.get("schema") != RESULT_SCHEMA:
        return ResultRead(run_id, None, f"{path}: not a result of schema {RESULT_SCHEMA}")
    if record.get("run_id") != run_id:
        return ResultRead(run_id, None, f"{path}: holds run {record.get('run_id')!r}, not {run_id!r}")
    missing = [m for m in TEST_METRICS if m not in record.get("test", {})]
    if missing:
        return ResultRead(run_id, None, f"{path}: incomplete result, missing {', '.join(missing)}")
    return ResultRead(run_id, record, None)


def has_result(run_dir: RunDir, run_id: str) -> bool:
    return read_result(run_dir, run_id).record is not None


def write_result(run_dir: RunDir, run_id: str, record: dict) -> None:
    write_json(run_dir.result(run_id), {"schema": RESULT_SCHEMA, "run_id": run_id, **record})
    run_dir.failure(run_id).unlink(missing_ok=True)


def write_failure(run_dir: RunDir, run_id: str, record: dict) -> None:
    write_json(run_dir.failure(run_id), {"run_id": run_id, **record})


def read_failure(run_dir: RunDir, run_id: str) -> dict | None:
    try:
        return json.loads(run_dir.failure(run_id).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def unused_gpu(record: dict) -> bool:
    """A run that Slurm gave a GPU but that TensorFlow could not see, so it trained on the CPU while holding the
    GPU (some sites kill such jobs; all waste the allocation)."""
    gpus = record.get("gpus") or {}
    return bool(gpus.get("SLURM_JOB_GPUS")) and not gpus.get("tensorflow")


def unused_gpu_warning(run_ids: list[str]) -> str:
    shown = ", ".join(run_ids[:5]) + (f" and {len(run_ids) - 5} more" if len(run_ids) > 5 else "")
    return (f"{len(run_ids)} run(s) were given a GPU by Slurm but trained on the CPU (TensorFlow saw no GPU): "
            f"{shown}. Install the GPU libraries on the nodes (pip install -e '.[gpu]') or load their modules "
            "with --setup, or submit with --gpus-per-task 0 so no GPU is held unused")


@dataclass(frozen=True)
class RunOutcome:
    """What a run's own files say: completed, failed (with its last error line and log), or missing."""

    state: State
    error: str | None = None
    log: str | None = None


def run_states(run_dir: RunDir, run_ids: Iterable[str], on_result: Callable[[str, dict], None] | None = None,
               ) -> tuple[dict[str, RunOutcome], list[str]]:
    """run_id -> its outcome from the result and failure files, and the result files that had to be skipped.
    ``on_result(run_id, record)`` (if given) sees every valid result as it is read, so callers need not read
    the files again (and need not keep whole records alive)."""
    states: dict[str, RunOutcome] = {}
    problems = []
    for run_id in run_ids:
        found = read_result(run_dir, run_id)
        if found.record is not None:
            states[run_id] = RunOutcome(State.completed)
            if on_result is not None:
                on_result(run_id, found.record)
            continue
        if found.problem:
            problems.append(found.problem)
        failure = read_failure(run_dir, run_id)
        if failure:
            error = (failure.get("error") or "").strip().splitlines()
            states[run_id] = RunOutcome(State.failed, error[-1] if error else None, failure.get("log"))
        else:
            states[run_id] = RunOutcome(State.missing)
    return states, problems
