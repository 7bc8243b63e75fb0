"""Smoke run on real recordings: storm-petrel purrs (annotated, from the pykanto wheel) against finch song.

The recordings are read from the installed wheel at test time (their licence forbids shipping cuts).
"""

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import write_sweep

from hpc_radr.executors.local import run_local
from hpc_radr.results import read_result
from hpc_radr.submission import prepare, remaining

pytestmark = pytest.mark.training


def pykanto_raw() -> Path:
    spec = importlib.util.find_spec("pykanto")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pykanto's wheel (real recordings) is not installed; scripts/setup --test installs it")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "raw"


def call_boxes(xml: Path) -> list[tuple[int, int]]:
    """(start frame, duration in frames) of each annotated call in a Sonic Visualiser box layer."""
    return [(int(p.get("frame")), int(p.get("duration"))) for p in ET.parse(xml).iter("point")]


def write_clip(path: Path, audio: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), audio, rate)


@pytest.fixture(scope="module")
def real_source(tmp_path_factory) -> Path:
    raw = pykanto_raw()
    root = tmp_path_factory.mktemp("real") / "source"
    calls = []
    for name in ("XC46092", "XC663885"):
        audio, rate = soundfile.read(str(raw / "STORM-PETREL" / f"{name}.wav"), always_2d=True)
        for start, duration in call_boxes(raw / "STORM-PETREL" / f"{name}.xml"):
            calls.append((audio[start:start + duration, 0], rate))
    assert len(calls) == 11
    tiers = ["high", "high", "high", "medium", "medium", "medium", "low", "low"]
    for k, (clip, rate) in enumerate(calls):
        folder = root / "train" / "RADR" / tiers[k] if k < len(tiers) else root / "test" / "RADR"
        write_clip(folder / f"petrel_{k:02d}.wav", clip, rate)
    negatives = []
    for name in ("348", "363"):
        audio, rate = soundfile.read(str(raw / "BENGALESE_FINCH" / "bird_3" / f"{name}.wav"), always_2d=True)
        negatives += [(audio[s:s + 3 * rate, 0], rate) for s in range(0, len(audio) - 3 * rate, 3 * rate)]
    assert len(negatives) >= 12
    for k, (clip, rate) in enumerate(negatives):
        folder = root / ("test" if k % 3 == 0 else "train") / "noise"
        write_clip(folder / f"finch_{k:02d}.wav", clip, rate)
    return root


def test_real_recordings_train_and_score(real_source, tmp_path):
    sweep = write_sweep(tmp_path, name="real", modes='["smote"]', ratios="[1.0]", seeds="[1]", epochs=10)
    manifest = prepare(sweep, tmp_path / "run", real_source, None, dedupe=True, overrides={})
    outcome = run_local(remaining(manifest), workers=1)
    assert not outcome.failed and len(outcome.trained) == 2
    for run in manifest.runs:
        record = read_result(manifest.run_dir, run.run_id).record
        assert record["test"]["n_positive"] == 3 and record["test"]["n_negative"] >= 4
        assert 0.0 <= record["test"]["auroc"] <= 1.0
        counts = record["sample_counts"]
        assert counts["fit_after_upsampling"]["positive"] > counts["fit_before_upsampling"]["positive"]
