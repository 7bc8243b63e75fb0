"""The source data layout: every problem reported before anything runs, datasets laid out without copying."""

import shutil
from pathlib import Path

import pytest
from conftest import SMALL

from hpc_radr.datasets import DataError, inspect, materialize
from hpc_radr.sweep import load_sweep

SWEEP = Path(__file__).parents[1] / "jobs" / "imbalance_regularization.toml"


@pytest.fixture()
def sweep():
    return load_sweep(SWEEP)[0]


@pytest.fixture()
def source(small_data, tmp_path):
    copy = tmp_path / "source"
    shutil.copytree(small_data, copy)
    return copy


def test_inventory_of_the_documented_layout(small_data, sweep):
    inventory = inspect(small_data, sweep)
    assert {t: len(f) for t, f in inventory.tiers.items()} == {"high": 6, "medium": 6, "low": 6}
    units = {u.name: u for u in inventory.units(sweep)}
    assert len(units["high_medium_low"].positives) == 18 and len(units["high_medium"].positives) == 12
    assert len(units["high_medium"].negatives) == SMALL.negatives
    assert len(units["test"].positives) == 3 * SMALL.test_per_tier
    assert units["high_medium"].fingerprint != units["high_medium_low"].fingerprint


def test_every_problem_is_listed_at_once(source, sweep):
    shutil.rmtree(source / "train" / "RADR" / "low")
    for f in (source / "test" / "noise").iterdir():
        f.unlink()
    (source / "train" / "RADR" / "high" / "notes.txt").write_text("not audio")
    (source / "train" / "noise" / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(DataError) as caught:
        inspect(source, sweep)
    message = str(caught.value)
    assert "low: missing (positive tier 'low')" in message
    assert "test/noise: no audio files" in message
    assert "notes.txt: not an audio file" in message
    assert "broken.wav: unreadable audio" in message


def test_missing_data_folder(sweep, tmp_path):
    with pytest.raises(DataError, match="data folder does not exist"):
        inspect(tmp_path / "nowhere", sweep)


def test_no_negative_class(source, sweep):
    shutil.rmtree(source / "train" / "noise")
    with pytest.raises(DataError, match="missing \\(negative class for training\\)"):
        inspect(source, sweep)


def test_materialize_links_instead_of_copying(small_data, sweep, tmp_path):
    unit = inspect(small_data, sweep).unit("high_medium", sweep)
    folder = materialize(unit, "RADR", "noise", tmp_path / "layout")
    links = sorted((folder / "RADR").iterdir())
    assert len(links) == 12 and all(link.is_symlink() for link in links)
    assert {link.resolve() for link in links} == set(unit.positives)
    assert len(list((folder / "noise").iterdir())) == SMALL.negatives


def test_fingerprint_changes_when_a_file_changes(source, sweep):
    before = inspect(source, sweep).unit("high_medium", sweep).fingerprint
    victim = next((source / "train" / "RADR" / "high").iterdir())
    victim.write_bytes(victim.read_bytes() + b"\0\0")
    assert inspect(source, sweep).unit("high_medium", sweep).fingerprint != before
