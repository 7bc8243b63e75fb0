"""`hpc-radr export` on a real trained run directory: what it chooses (validation only), what it writes, and
what it refuses without leaving anything behind."""

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpc_radr.cli import app
from hpc_radr.manifest import load
from hpc_radr.run_dir import RunDir

pytestmark = pytest.mark.training

GRID = ("dataset", "upsampling_mode", "upsampling_ratio", "focal_loss")


def export(*args: str):
    return CliRunner().invoke(app, ["export", *map(str, args)])


def copy_run(trained_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run", symlinks=True))


def rewrite_results(run_dir: Path, change) -> None:
    """Apply ``change(record, configuration)`` to every result file of ``run_dir``."""
    for path in (run_dir / "results").glob("*.json"):
        record = json.loads(path.read_text())
        change(record, record["configuration"])
        path.write_text(json.dumps(record))


def settings_of(run_dir: Path) -> dict[tuple, list]:
    """Grid point -> its configurations (index order)."""
    found: dict[tuple, list] = {}
    for config in load(RunDir(run_dir)).configurations:
        found.setdefault(tuple(getattr(config, k) for k in GRID), []).append(config)
    return found


def assert_refused(result, out: Path, words: str) -> None:
    """Exit 2, one error line naming the problem, and no output folder nor a staging folder beside it."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], result.stderr
    assert not out.exists()
    assert not [p for p in out.parent.glob(f".{out.name}.*")], "a staging folder was left behind"


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "classifier"
    result = export(trained_run, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_export_chooses_by_mean_validation_auprc_and_exports_the_median_seed(trained_run, exported):
    out, shown = exported
    card = json.loads((out / "model_card.json").read_text())
    assert shown["card"] == card and shown["folder"] == str(out)
    means = {}
    for key, configs in settings_of(trained_run).items():  # recomputed from the result files themselves
        values = [json.loads((trained_run / "results" / f"{c.run_id}.json").read_text())
                  ["validation_at_best_epoch"]["auprc"] for c in configs]
        means[key] = (statistics.mean(values), configs[0].index)
    best = min(means, key=lambda k: (-means[k][0], means[k][1]))
    assert tuple(card["configuration"][k] for k in GRID) == best
    assert card["selection"]["how"] == "validation" and card["selection"]["test_metrics_used"] is False
    assert card["selection"]["ranking"][0]["mean_val_auprc"] == pytest.approx(means[best][0])
    seeds = sorted(card["seeds"], key=lambda s: (-s["val_auprc"], s["seed"]))
    assert card["exported_run"]["run_id"] == seeds[(len(seeds) - 1) // 2]["run_id"]


def test_export_folder_holds_the_classifier_its_one_line_labels_and_the_card(trained_run, exported):
    out, _ = exported
    card = json.loads((out / "model_card.json").read_text())
    run_id = card["exported_run"]["run_id"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{run_id}.tflite", f"{run_id}_Labels.txt", "model_card.json", "model_card.md"])
    assert (out / f"{run_id}.tflite").read_bytes() == (trained_run / "models" / f"{run_id}.tflite").read_bytes()
    assert (out / f"{run_id}_Labels.txt").read_text() == "RADR\n"
    manifest = load(RunDir(trained_run))
    assert card["data"]["test"]["data_fingerprint"] == manifest.units["test"].data_fingerprint
    dataset = manifest.units[card["configuration"]["dataset"]]
    assert card["data"]["dataset"]["data_fingerprint"] == dataset.data_fingerprint
    assert card["model"]["base"]["sha256"] == manifest.record.model.sha256
    assert card["evaluation_protocol"]["name"] == "held_out"
    assert card["versions"] and card["versions"][0]["birdnet-analyzer"] == "2.4.0"
    auprc = card["test_metrics"]["auprc"]
    assert auprc["n"] == 2 and auprc["ci_low"] <= auprc["mean"] <= auprc["ci_high"]
    assert auprc["mean"] == pytest.approx(statistics.mean(s["auprc"] for s in card["seeds"]))
    threshold = card["threshold"]
    assert threshold["chosen_on"] == "held_out_split" and threshold["precision_target"] == 0.9
    if threshold["available"]:  # the tiny validation split may reach precision 0.9 at no threshold
        assert threshold["validation"]["precision"] >= 0.9
        assert threshold["min_conf"] <= threshold["value"] < threshold["min_conf"] + 1e-4
    text = (out / "model_card.md").read_text()
    assert f"# Model card: {run_id}" in text and "t-interval over seeds" in text and "`held_out`" in text


def test_choice_uses_validation_metrics_never_test_metrics(trained_run, tmp_path):
    """Validation favours one configuration (ratio 0.0, twin of the other modes' 0.0), test metrics another."""
    run_dir = copy_run(trained_run, tmp_path)
    settings = settings_of(run_dir)
    by_validation, by_test = list(settings)[0], list(settings)[-1]
    assert by_validation[2] == 0.0  # linear 0.0: the same runs as smote 0.0, which ties and comes later

    def skew(record: dict, config: dict) -> None:
        key = tuple(config[k] for k in GRID)
        shares = any(c.run_id == record["run_id"] for c in settings[by_validation])
        record["validation_at_best_epoch"]["auprc"] = 0.95 if shares else 0.05
        for metric in ("auprc", "auroc", "precision", "recall", "f1"):
            record["test"][metric] = 0.99 if key == by_test else 0.01

    rewrite_results(run_dir, skew)
    result = export(run_dir, "--json")
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)["card"]
    assert tuple(card["configuration"][k] for k in GRID) == by_validation
    assert [t["upsampling_mode"] for t in card["configuration"]["same_runs_as"]] == ["smote"]
    assert card["test_metrics"]["auprc"]["mean"] == pytest.approx(0.01)
    assert Path(json.loads(result.stdout)["folder"]) == run_dir / "export" / card["exported_run"]["run_id"]


def test_threshold_not_available_for_results_without_scores(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path)
    rewrite_results(run_dir, lambda record, config: record.pop("scores"))
    out = tmp_path / "old"
    result = export(run_dir, "--out", out)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model_card.json").read_text())
    assert card["threshold"] == {"precision_target": 0.9, "available": False, "value": None,
                                 "reason": "result has no per-clip scores; rerun with this version"}
    assert card["test_metrics"]["recall_at_target"]["n"] == 0
    expected = "threshold: not available (result has no per-clip scores; rerun with this version)"
    assert expected in (out / "model_card.md").read_text() and expected in result.stdout


def test_bad_inputs_give_one_line_and_leave_no_folder(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path)
    out = tmp_path / "out"
    assert_refused(export(run_dir, "--config", 999, "--out", out), out, "no configuration 999")
    assert_refused(export(run_dir, "--precision-target", 1.0, "--out", out), out, "strictly between 0 and 1")

    configs = load(RunDir(run_dir)).configurations
    gone = configs[-1]  # its configuration loses a seed: chosen by hand it fails, and it cannot compete
    (run_dir / "results" / f"{gone.run_id}.json").unlink()
    assert_refused(export(run_dir, "--config", gone.index, "--out", out), out,
                   f"configuration {gone.index} (run {gone.run_id}) has no completed run")
    result = export(run_dir, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    left_out = json.loads(result.stdout)["card"]["selection"]["left_out"]
    assert [(e["dataset"], e["upsampling_mode"], e["reason"]) for e in left_out] == [
        (gone.dataset, gone.upsampling_mode, "1 of 2 seeds completed")]

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = export(run_dir, "--out", out)
    assert result.exit_code == 2 and "exists; pass --force" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    result = export(run_dir, "--out", out, "--force", "--config", configs[0].index)
    assert result.exit_code == 0, result.output
    replaced = configs[0].run_id
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{replaced}.tflite", f"{replaced}_Labels.txt", "model_card.json", "model_card.md"])
    assert json.loads((out / "model_card.json").read_text())["selection"]["how"] == "by hand (--config)"
    assert not [p for p in tmp_path.glob(".out.*")]

    for path in (run_dir / "results").glob("*.json"):
        path.unlink()
    empty = tmp_path / "empty"
    assert_refused(export(run_dir, "--out", empty), empty, "no completed runs yet")
    assert_refused(export(tmp_path, "--out", empty), empty, "not a run directory")


def test_export_imports_no_tensorflow(trained_run, tmp_path):
    probe = ("import sys; from hpc_radr.cli import app; "
             "app(['export', sys.argv[1], '--out', sys.argv[2]], standalone_mode=False); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'birdnet_analyzer', 'keras')))")
    done = subprocess.run([sys.executable, "-c", probe, str(trained_run), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
