"""The clip store: arrays assembled from it are BirdNET-Analyzer 2.4's own extraction, bit for bit, however the
clips were sharded; every distinct clip is extracted once; a stopped extraction leaves nothing half-stored; data
changed after submit is refused; run directories from before the clip store still read."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_sweep

from hpc_radr import clip_store, runner
from hpc_radr.datasets import materialize
from hpc_radr.embedding_cache import CacheError
from hpc_radr.manifest import Manifest, load
from hpc_radr.run_dir import RunDir
from hpc_radr.status import status
from hpc_radr.submission import Work, prepare, remaining

UNITS = ("high_medium_low", "high_medium", "test")


@pytest.fixture(scope="module")
def shared_data(small_data, tmp_path_factory) -> Path:
    """The small data, plus a copy of one high-tier training clip in the test set under another name: the same
    bytes in both datasets and the test set."""
    data = shutil.copytree(small_data, tmp_path_factory.mktemp("shared") / "data")
    first = sorted((data / "train" / "RADR" / "high").iterdir())[0]
    shutil.copyfile(first, data / "test" / "RADR" / f"copy-of-{first.name}")
    return data


def _no_slurm(job_ids: list[str]):
    raise AssertionError(f"nothing was submitted, yet Slurm was asked about {job_ids}")


def submitted(data: Path, folder: Path) -> Manifest:
    return prepare(write_sweep(folder, modes='["linear"]', ratios="[0.0]", seeds="[1]"), folder / "run", data, None,
                   dedupe=True, overrides={})


def arrays(manifest: Manifest, name: str) -> tuple[np.ndarray, np.ndarray]:
    keys = clip_store.clip_keys(manifest)
    found = clip_store.ClipStore(manifest.run_dir).assemble(clip_store.unit_rows(manifest, name, keys), ["RADR"])
    return found.x, found.y


def shard_records(manifest: Manifest) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(manifest.run_dir.clips.glob("shard-*.json"))]


def distinct_clips(manifest: Manifest) -> int:
    return len(set(manifest.record.clip_content.values()))


@pytest.fixture(scope="module")
def one_process(shared_data, tmp_path_factory) -> Manifest:
    """Every clip extracted by one call in this process (2 pool workers)."""
    manifest = submitted(shared_data, tmp_path_factory.mktemp("one"))
    assert runner.embed(manifest.run_dir.path, workers=2)["extracted"] == distinct_clips(manifest)
    return manifest


def birdnet_extraction(manifest: Manifest, name: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """What hpc-radr extracted before the clip store: BirdNET's own _load_training_data over the unit's
    materialized class folders, the whole unit in one call."""
    import birdnet_analyzer.config as cfg
    from birdnet_analyzer.train.utils import _load_training_data

    from hpc_radr.birdnet.runtime import configure

    settings = manifest.sweep.training
    configure(manifest.model, settings.crop_mode, settings.overlap, 2)
    unit = clip_store.unit_of(manifest, name)
    cfg.TRAIN_DATA_PATH, cfg.TEST_DATA_PATH = str(materialize(unit, "RADR", "noise", folder)), None
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as the extraction itself does under submitit
    try:
        x, y, _, _, labels = _load_training_data(cache_mode=None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert labels == ["RADR"] and cfg.BINARY_CLASSIFICATION
    return x, y



@pytest.mark.training
@pytest.mark.parametrize("name", UNITS)
def test_assembled_arrays_are_birdnets_own_extraction(one_process, name, tmp_path):
    x, y = arrays(one_process, name)
    expected_x, expected_y = birdnet_extraction(one_process, name, tmp_path / "layout")
    assert x.dtype == expected_x.dtype == np.float32 and y.dtype == expected_y.dtype == np.float32
    assert x.shape == expected_x.shape and y.shape == expected_y.shape and len(x) > 0
    assert np.array_equal(x, expected_x) and np.array_equal(y, expected_y)
    # and what training reads: the unit's cache, assembled from the store
    cached = runner.ensure_embeddings(one_process, name)
    assert np.array_equal(cached.x, expected_x) and np.array_equal(cached.y, expected_y)


@pytest.mark.training
def test_a_clip_shared_by_both_datasets_and_the_test_set_is_extracted_once(one_process):
    manifest = one_process
    keys = clip_store.clip_keys(manifest)
    rows = {name: {key for key, _ in clip_store.unit_rows(manifest, name, keys)} for name in UNITS}
    shared = rows["high_medium_low"] & rows["high_medium"] & rows["test"]
    assert len(shared) == 1  # the copied file, under two paths
    files = sum(len(spec.positives) + len(spec.negatives) for spec in manifest.units.values())
    assert distinct_clips(manifest) == len(set().union(*rows.values())) == 80 < files == 123
    records = shard_records(manifest)
    assert sum(record["clips"] for record in records) == 80  # extracted clips = distinct clips
    assert len(clip_store.ClipStore(manifest.run_dir).index()) == 80
    assert status(manifest.run_dir.path, query=_no_slurm).clips == {"stored": 80, "total": 80}


EMBED = """
import json, sys
from hpc_radr import runner
print(json.dumps(runner.embed(sys.argv[1], json.loads(sys.argv[2]), 1)))
"""


@pytest.mark.training
def test_shards_in_any_order_from_two_processes_give_the_same_arrays(one_process, shared_data, tmp_path):
    manifest = submitted(shared_data, tmp_path)
    total = distinct_clips(manifest)
    ranges = [[start, min(start + 7, total)] for start in range(0, total, 7)]
    random.Random(11).shuffle(ranges)
    halves = [ranges[0::2], ranges[1::2]]
    tasks = [subprocess.Popen([sys.executable, "-c", EMBED, str(manifest.run_dir.path), json.dumps(half)],
                              stdout=subprocess.PIPE, text=True) for half in halves]
    said = [json.loads(task.communicate(timeout=600)[0]) for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0]
    assert sum(s["extracted"] for s in said) == total
    records = shard_records(manifest)
    assert len(records) == len(ranges) == 12 and len({record["pid"] for record in records}) == 2
    assert sum(record["clips"] for record in records) == total  # none extracted twice
    for name in UNITS:
        x, y = arrays(manifest, name)
        expected_x, expected_y = arrays(one_process, name)
        assert np.array_equal(x, expected_x) and np.array_equal(y, expected_y), name


@pytest.mark.training
def test_the_local_executor_spreads_the_shards_over_its_workers(one_process, shared_data, tmp_path):
    from hpc_radr.executors.local import run_local

    manifest = submitted(shared_data, tmp_path)
    work = remaining(manifest)
    assert len(work.missing_clips) == work.clip_count == 80
    run_local(Work(manifest, work.missing_clips, work.clip_count, [], []), workers=2, shard_clips=7)
    records = shard_records(manifest)
    assert len(records) == 12 and len({record["pid"] for record in records}) == 2
    assert all(record["workers"] == 1 for record in records)  # the 2 cores shared by the 2 workers
    assert sum(record["clips"] for record in records) == 80
    for name in UNITS:
        assert all(np.array_equal(a, b) for a, b in zip(arrays(manifest, name), arrays(one_process, name),
                                                        strict=True)), name
    assert remaining(manifest).missing_clips == []


def _pool_started(pid: int) -> bool:
    path = f"/proc/{pid}/task/{pid}/children"
    return os.path.exists(path) and bool(open(path).read().split())


@pytest.mark.training
def test_a_killed_extraction_leaves_nothing_the_index_names(one_process, shared_data, tmp_path):
    manifest = submitted(shared_data, tmp_path)
    task = subprocess.Popen([sys.executable, "-c", EMBED, str(manifest.run_dir.path), "null"],
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not _pool_started(task.pid) and task.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # a moment into extracting
    os.killpg(task.pid, signal.SIGKILL)
    task.wait()
    store = clip_store.ClipStore(manifest.run_dir)
    assert store.index() == {}  # its one range was never named: no clip half-stored
    with pytest.raises(CacheError, match="33 clips are not in the clip store"):
        arrays(manifest, "test")  # 32 test clips and the copy of a training clip
    assert status(manifest.run_dir.path, query=_no_slurm).clips == {"stored": 0, "total": 80}
    assert len(remaining(manifest).missing_clips) == 80


@pytest.mark.training
def test_a_failure_between_shard_and_index_leaves_the_clips_missing(one_process, shared_data, tmp_path,
                                                                    monkeypatch):
    manifest = submitted(shared_data, tmp_path)

    def killed(path):
        raise KeyboardInterrupt("killed before the index was written")

    monkeypatch.setattr(clip_store, "locked", killed)
    with pytest.raises(KeyboardInterrupt):
        runner.embed(manifest.run_dir.path, [(0, 7)], workers=1)
    assert list(manifest.run_dir.clips.glob("shard-*.npz"))  # the shard was written whole ...
    assert clip_store.ClipStore(manifest.run_dir).index() == {}  # ... but nothing names it
    monkeypatch.undo()
    assert runner.embed(manifest.run_dir.path, [(0, 7)], workers=1) == {"clips": 7, "extracted": 7}
    assert len(clip_store.ClipStore(manifest.run_dir).index()) == 7


def test_a_file_changed_after_submit_is_refused_with_a_clear_error(shared_data, tmp_path):
    data = shutil.copytree(shared_data, tmp_path / "data")
    manifest = submitted(data, tmp_path)
    victim = sorted((data / "train" / "noise").iterdir())[3]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, other bytes
    victim.write_bytes(bytes(raw))
    with pytest.raises(CacheError, match=f"{victim}: the data changed since submit .*submit again into a new run"):
        runner.embed(manifest.run_dir.path)
    with pytest.raises(CacheError, match="changed since submit"):
        runner.ensure_embeddings(manifest, "high_medium")
    assert clip_store.ClipStore(manifest.run_dir).index() == {}
    victim.unlink()
    with pytest.raises(CacheError, match=f"{victim}: data file gone since submit"):
        runner.embed(manifest.run_dir.path)


def test_a_run_directory_from_before_the_clip_store_still_reads(shared_data, tmp_path):
    """Its manifest has no clip fingerprints: status and collect work, resubmitting what its caches already
    hold works, and only extracting says why it cannot."""
    from typer.testing import CliRunner

    from hpc_radr.cli import app
    from hpc_radr.collect import collect

    manifest = submitted(shared_data, tmp_path)
    raw = json.loads(manifest.run_dir.manifest.read_text())
    del raw["clip_content"]
    manifest.run_dir.manifest.write_text(json.dumps(raw))
    old = load(RunDir(manifest.run_dir.path))
    assert old.record.clip_content == {}
    report = status(old.run_dir.path, query=_no_slurm)
    assert report.clips is None and report.counts == {"missing": len(old.configurations)}
    assert "clips" not in CliRunner().invoke(app, ["status", str(old.run_dir.path)]).stdout
    assert collect(old.run_dir.path).missing
    with pytest.raises(CacheError, match="submitted by an hpc-radr without the clip store.*new run directory"):
        remaining(old)
    refused = CliRunner().invoke(app, ["resubmit", str(old.run_dir.path), "--executor", "local"])
    assert refused.exit_code == 2 and "without the clip store" in " ".join(refused.stderr.split())
    for spec in old.units.values():  # caches built before: nothing to extract, so nothing to refuse
        old.run_dir.cache_file(spec.key).parent.mkdir(parents=True, exist_ok=True)
        old.run_dir.cache_file(spec.key).touch()
    work = remaining(old)
    assert work.missing_clips == [] and len(work.pending_runs) == len(old.runs)
