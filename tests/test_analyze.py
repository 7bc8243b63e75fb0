"""`hpc-radr analyze` with an exported classifier: BirdNET-Analyzer's own analysis gives the run's own test scores,
writes only into --out, and refuses bad input with one line and no folder."""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpc_radr.cli import app
from hpc_radr.export import export
from hpc_radr.results import read_result, run_scores
from hpc_radr.run_dir import RunDir

pytestmark = pytest.mark.training

# BirdNET's tables show confidences with 4 decimals (rounding: at most 5e-5), and its embeddings at analysis agree
# with the cached training embeddings to about 1e-5: within 1e-4 of the run's own score.
TOLERANCE = 1e-4


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` with its size and mtime (Python's own __pycache__ left out)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def analyze_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "hpc_radr", "analyze", *map(str, args)]


def assert_refused(result_code: int, stderr: str, out: Path, words: str) -> None:
    lines = stderr.strip().splitlines()
    assert result_code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], stderr
    assert not out.exists()
    assert not [p for p in out.parent.glob(f".{out.name}.*")], "a staging folder was left behind"


@pytest.fixture(scope="module")
def classifier(trained_run, tmp_path_factory) -> Path:
    return export(RunDir(trained_run), out=tmp_path_factory.mktemp("classifier") / "radr").folder


@pytest.fixture(scope="module")
def analyzed(small_data, classifier, tmp_path_factory):
    """The sweep's test clips (the data source's test/ folder) analyzed by BirdNET with the exported classifier."""
    package = Path(importlib.util.find_spec("birdnet_analyzer").submodule_search_locations[0])
    before = snapshot(package), snapshot(classifier)
    out = tmp_path_factory.mktemp("analysis") / "results"
    done = subprocess.run(analyze_command(small_data / "test", "--classifier", classifier, "--out", out,
                                          "--min-conf", 0, "--combine", "--json"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout), (package, classifier, before)


def test_confidences_equal_the_runs_own_test_scores(trained_run, small_data, classifier, analyzed):
    out, summary, _ = analyzed
    card = json.loads((classifier / "model_card.json").read_text())
    scores = run_scores(read_result(RunDir(trained_run), card["exported_run"]["run_id"]).record)
    test = small_data / "test"
    # the test cache's order: BirdNET's class folders sorted, then the files of each sorted by name
    clips = [test / label / name for label in sorted(os.listdir(test)) for name in sorted(os.listdir(test / label))]
    assert len(clips) == len(scores.test) == summary["files"] == summary["detections"] == 32
    assert [c.parent.name == "RADR" for c in clips] == scores.test_positive.tolist()
    found = {}
    for table in out.rglob("*.BirdNET.results.csv"):
        rows = list(csv.DictReader(table.open()))
        assert len(rows) == 1 and (rows[0]["Start (s)"], rows[0]["End (s)"]) == ("0.0", "3.0")  # one 3-s clip each
        assert table.name == Path(rows[0]["File"]).name.rsplit(".", 1)[0] + ".BirdNET.results.csv"
        found[Path(rows[0]["File"])] = float(rows[0]["Confidence"])
    assert sorted(found) == sorted(clips)
    differences = [abs(found[clip] - float(score)) for clip, score in zip(clips, scores.test, strict=True)]
    assert max(differences) <= TOLERANCE, differences
    for clip, confidence in found.items():  # the selection table says the same
        table = out / clip.parent.name / (clip.name.rsplit(".", 1)[0] + ".BirdNET.selection.table.txt")
        row = table.read_text().splitlines()[1].split("\t")
        assert (row[7], float(row[9]), row[10]) == ("RADR", confidence, str(clip))
    combined = list(csv.DictReader((out / "BirdNET_CombinedTable.csv").open()))
    assert {Path(r["File"]): float(r["Confidence"]) for r in combined} == found


def test_analysis_writes_only_into_its_output_folder(analyzed):
    out, summary, (package, classifier, before) = analyzed
    assert (snapshot(package), snapshot(classifier)) == before
    assert not [p for p in out.parent.iterdir() if p != out], "a staging folder was left behind"
    names = {p.name for p in out.iterdir()}
    assert names == {"RADR", "noise", "BirdNET_analysis_params.csv", "BirdNET_CombinedTable.csv",
                     "BirdNET_SelectionTable.txt", "BirdNET_SelectionTable.list.txt", "hpc-radr-analyze.log"}
    not_tables = ("hpc-radr-analyze.log", "BirdNET_analysis_params.csv")
    assert sorted(summary["tables"]) == sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name not in not_tables)
    params = list(csv.reader((out / "BirdNET_analysis_params.csv").open()))
    assert params[1][params[0].index("Custom classifier path")] == str(next(classifier.glob("*.tflite")))


def test_bad_input_is_refused_before_birdnet_loads(small_data, classifier, tmp_path):
    out = tmp_path / "out"
    audio = small_data / "test"

    def refused(folder: Path, words: str, *paths: Path) -> None:
        result = CliRunner().invoke(app, ["analyze", *map(str, paths or [audio]), "--classifier", str(folder),
                                          "--out", str(out)])
        assert_refused(result.exit_code, result.stderr, out, words)

    no_labels = Path(shutil.copytree(classifier, tmp_path / "no_labels"))
    next(no_labels.glob("*_Labels.txt")).unlink()
    refused(no_labels, "no labels file")
    no_model = Path(shutil.copytree(classifier, tmp_path / "no_model"))
    next(no_model.glob("*.tflite")).unlink()
    refused(no_model, "no .tflite file")
    two_lines = Path(shutil.copytree(classifier, tmp_path / "two_lines"))
    next(two_lines.glob("*_Labels.txt")).write_text("RADR\nnoise\n")
    refused(two_lines, "exactly one line")
    refused(tmp_path / "nowhere", "no such classifier folder")

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no audio here")
    refused(classifier, "no audio files found", empty)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    refused(classifier, f"{broken}: unreadable audio", audio, broken)
    refused(classifier, "no such file or folder", tmp_path / "missing.wav")
    twins = tmp_path / "twins"
    twins.mkdir()
    wav = next((audio / "RADR").iterdir())
    for suffix in (".wav", ".flac"):
        shutil.copyfile(wav, twins / f"clip{suffix}")
    refused(classifier, "would write the same result tables", twins)

    out.mkdir()
    result = CliRunner().invoke(app, ["analyze", str(audio), "--classifier", str(classifier), "--out", str(out)])
    assert result.exit_code == 2 and "exists; pass --force" in result.stderr
    out.rmdir()
    inside = classifier / "results"
    result = CliRunner().invoke(app, ["analyze", str(audio), "--classifier", str(classifier), "--out", str(inside)])
    assert_refused(result.exit_code, result.stderr, inside, "write the results elsewhere")


def test_audio_birdnet_cannot_decode_names_the_file_and_leaves_nothing(small_data, classifier, tmp_path):
    """An mp3 (no header check possible before decoding) that BirdNET fails on: the whole analysis is undone."""
    junk = tmp_path / "audio" / "junk.mp3"
    junk.parent.mkdir()
    junk.write_bytes(bytes(range(256)) * 20)
    out = tmp_path / "out"
    done = subprocess.run(analyze_command(small_data / "test" / "RADR", junk, "--classifier", classifier,
                                          "--out", out, "--threads", 1),
                          capture_output=True, text=True, timeout=300)
    assert_refused(done.returncode, done.stderr, out, f"{junk}: BirdNET cannot analyze this audio file")


def test_help_and_refusals_import_no_tensorflow(classifier, tmp_path):
    probe = ("import sys; from hpc_radr.cli import app\n"
             "for args in (['analyze', '--help'], ['export', '--help'], ['analyze', sys.argv[1], '--classifier', "
             "sys.argv[2]]):\n"
             "    try: app(args, standalone_mode=False)\n"
             "    except BaseException: pass\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'birdnet_analyzer', 'keras')))")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "missing.wav"), str(classifier)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
