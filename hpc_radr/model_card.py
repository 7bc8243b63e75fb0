"""The model card of an exported classifier: what was chosen and how, how well it does, and what it came from.

One dict (``model_card.json``) rendered once more as Markdown (``model_card.md``). Test metrics are given as the
mean over the chosen configuration's seeds with a 95 % t-interval (the test set taken as fixed); the threshold is
chosen on the exported run's validation scores and only then applied to the test set.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np

from hpc_radr import __version__
from hpc_radr.atomic import plain
from hpc_radr.manifest import Manifest
from hpc_radr.operating_points import at_threshold, operating_points, precision_name, threshold_for_precision
from hpc_radr.report.analysis import CONFIDENCE, interval
from hpc_radr.results import run_scores
from hpc_radr.selection import RULE, SEED_RULE, Choice
from hpc_radr.sweep import TRAINING_AXES, training_for

CARD_SCHEMA = 1
METRICS = {"auprc": "AUPRC", "auroc": "AUROC", "precision": "precision at 0.5", "recall": "recall at 0.5",
           "f1": "F1 at 0.5"}
PROTOCOLS = {
    "held_out": "BirdNET trained with its validation split of the training data (early stopping and best weights "
                "chosen there); the test set was scored once, untouched",
    "birdnet": "BirdNET's own protocol: the test set served as the validation set (early stopping, best weights "
               "and this export's choice and threshold were all made on it), so the test metrics are optimistic",
}
NO_SCORES = "result has no per-clip scores; rerun with this version"


def threshold(record: dict, target: float) -> dict:
    """The threshold with the most recall at precision >= ``target`` on the run's validation scores, and what it
    gives there and on the test set. ``min_conf``: the value for ``analyze --min-conf``, rounded down to the 4
    decimals of BirdNET's tables so that the clip at the threshold stays a detection."""
    scores = run_scores(record)
    if scores is None:
        return {"precision_target": target, "available": False, "value": None, "reason": NO_SCORES}
    positives = int(scores.validation_positive.sum())
    clips = {"clips": len(scores.validation), "positive": positives, "negative": len(scores.validation) - positives}
    base = {"precision_target": target, "chosen_on": scores.validation_source, "validation_clips": clips}
    value = threshold_for_precision(scores.validation, scores.validation_positive, target)
    if not math.isfinite(value):
        return {**base, "available": False, "value": None,
                "reason": f"no threshold reaches precision {target:g} on the {clips['clips']} validation clips "
                          f"({positives} positive)"}
    val_recall, val_precision = at_threshold(scores.validation, scores.validation_positive, value)
    test_recall, test_precision = at_threshold(scores.test, scores.test_positive, value)
    return {**base, "available": True, "value": value, "min_conf": math.floor(value * 1e4) / 1e4,
            "validation": {"precision": float(val_precision[0]), "recall": float(val_recall[0])},
            "test": {"precision": float(test_precision[0]), "recall": float(test_recall[0])}}


def _at_target(record: dict, target: float) -> tuple[float, float]:
    """Test (recall, precision) at the threshold chosen on the run's validation scores, as `collect` computes
    them: where no threshold reaches the target nothing is detected (recall 0); NaN without scores."""
    scores = run_scores(record)
    if scores is None:
        return math.nan, math.nan
    found = operating_points(scores, [target], [])
    return found[f"recall_at_{precision_name(target)}"], found[f"precision_at_{precision_name(target)}"]


def _over_seeds(values: list[float]) -> dict:
    """Mean and 95% t-interval over seeds, the interval cut to [0, 1]: every card metric is a proportion, and with
    3 seeds a t-interval often reaches past 1, which a reader would take for an error."""
    found = interval(np.asarray(values, dtype=float))
    entry = {key: found[key] for key in ("n", "mean", "sd", "ci_low", "ci_high")}
    if not math.isnan(entry["ci_low"]):
        entry["ci_low"], entry["ci_high"] = max(0.0, entry["ci_low"]), min(1.0, entry["ci_high"])
    return entry


def build(manifest: Manifest, choice: Choice, records: dict[str, dict], target: float, files: dict) -> dict:
    """The card as plain JSON data. ``records``: run_id -> result of each completed seed of the configuration;
    ``files``: the exported file names and the classifier's sha256."""
    exported = choice.exported
    run_id = str(exported["run_id"])
    seeds = choice.seeds.sort_values("seed")
    per_seed = []
    for row in seeds.to_dict(orient="records"):
        recall, precision = _at_target(records[row["run_id"]], target)
        per_seed.append({"seed": int(row["seed"]), "run_id": row["run_id"], "index": int(row["index"]),
                         "val_auprc": row["val_auprc"], "best_epoch": int(row["best_epoch"]),
                         "epochs_run": int(row["epochs_run"]), **{m: row[m] for m in METRICS},
                         "recall_at_target": recall, "precision_at_target": precision})
    summary = {m: _over_seeds([s[m] for s in per_seed]) for m in (*METRICS, "recall_at_target",
                                                                   "precision_at_target")}
    config = manifest.run(run_id)
    units = manifest.units_of(config)
    dataset = str(choice.setting["dataset"])
    tiers = next(d.tiers for d in manifest.sweep.datasets if d.name == dataset)
    record = records[run_id]
    protocols = sorted({r["evaluation_protocol"] for r in records.values()})
    versions = []
    for found in (r.get("versions", {}) for r in records.values()):
        if found not in versions:
            versions.append(found)
    card = {
        "schema": CARD_SCHEMA,
        "name": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "exported_by": f"hpc-radr {__version__}",
        "classifier": {**files, "positive_class": manifest.sweep.data.positive_class,
                       "input": "BirdNET V2.4 embeddings (1024 values per 3-s segment)",
                       "output": "one logit; BirdNET's sigmoid (sensitivity 1.0) turns it into the confidence",
                       "source": str(manifest.run_dir.model(run_id))},
        "run_dir": str(manifest.run_dir.path),
        "sweep": manifest.sweep.name,
        "configuration": {**choice.setting, "tiers": list(tiers), "same_runs_as": choice.same_runs_as},
        "selection": {
            "how": "by hand (--config)" if choice.by_hand else "validation",
            "rule": f"configuration {int(exported['index'])} chosen by hand" if choice.by_hand else RULE,
            "metric": "val_auprc: BirdNET's validation AUPRC at the best epoch",
            "seed_rule": "the run of the configuration chosen by hand" if choice.by_hand else SEED_RULE,
            "validation_rank": next((rank for rank, entry in enumerate(choice.ranking, start=1)
                                     if all(entry[key] == value for key, value in choice.setting.items())), None),
            "ranking": choice.ranking,
            "left_out": choice.left_out,
            "test_metrics_used": False,
        },
        "exported_run": {"run_id": run_id, "index": int(exported["index"]), "seed": int(exported["seed"]),
                         "val_auprc": exported["val_auprc"], "test": {m: record["test"][m] for m in METRICS}},
        "seeds": per_seed,
        "test_metrics": {"confidence": CONFIDENCE,
                         "interval": "t-interval over seeds (the test set taken as fixed), cut to [0, 1]",
                         "test_clips": {"positive": record["test"]["n_positive"],
                                        "negative": record["test"]["n_negative"]},
                         **summary},
        "threshold": threshold(record, target),
        "evaluation_protocol": {"name": protocols[0] if len(protocols) == 1 else protocols,
                                "meaning": "; ".join(PROTOCOLS.get(p, p) for p in protocols)},
        "training": training_for(manifest.sweep, config).model_dump(),
        "data": {"source": manifest.record.data_source,
                 "dataset": _unit(manifest, units[0]), "test": _unit(manifest, units[1])},
        "model": {"base": manifest.record.model.model_dump(), "classifier_sha256": files["sha256"]},
        "versions": versions,
    }
    return plain(card, nan_as_null=True)


def _unit(manifest: Manifest, name: str) -> dict:
    spec = manifest.units[name]
    return {"name": name, "data_fingerprint": spec.data_fingerprint, "embedding_cache_key": spec.key,
            "positive_files": len(spec.positives), "negative_files": len(spec.negatives)}


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(entry: dict) -> str:
    if entry["n"] < 2:
        return f"{_num(entry['mean'])} (n = {entry['n']}: no interval)"
    return f"{_num(entry['mean'])} [{_num(entry['ci_low'])}, {_num(entry['ci_high'])}] (n = {entry['n']})"


def threshold_line(found: dict) -> str:
    """The threshold in one line, as the card and the command line say it."""
    target = f"precision >= {found['precision_target']:g}"
    if not found["available"]:
        return f"threshold: not available ({found['reason']}); target {target}"
    return (f"threshold for {target}: {found['value']:.6f}, chosen on the validation scores "
            f"({found['chosen_on']}); on the test set it gives precision {found['test']['precision']:.3f}, "
            f"recall {found['test']['recall']:.3f}")


def markdown(card: dict) -> str:
    """The card for people."""
    config, selection, metrics = card["configuration"], card["selection"], card["test_metrics"]
    exported, found = card["exported_run"], card["threshold"]
    focal = "on" if config["focal_loss"] else "off"
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"A BirdNET-Analyzer 2.4 custom classifier detecting **{card['classifier']['positive_class']}**, trained on "
        "BirdNET V2.4 embeddings by the sweep "
        f"`{card['sweep']}` ({card['run_dir']}). Exported {card['created_at']} by {card['exported_by']}.",
        "",
        f"- files: `{card['classifier']['file']}`, `{card['classifier']['labels_file']}` (one line: "
        f"`{card['classifier']['positive_class']}`); classifier sha256 `{card['classifier']['sha256']}`",
        "- use: `hpc-radr analyze AUDIO... --classifier THIS_FOLDER"
        + (f" --min-conf {found['min_conf']:.4f}`" if found["available"] else "`"),
        "",
        "## Configuration",
        "",
        f"- dataset `{config['dataset']}` (tiers {', '.join(config['tiers'])}), upsampling "
        f"`{config['upsampling_mode']}` at ratio {config['upsampling_ratio']:g}, focal loss {focal}",
    ]
    swept = [f"{name} {config[name]:g}" if isinstance(config[name], float) else f"{name} {config[name]}"
             for name in TRAINING_AXES if name in config]
    if swept:
        lines.append(f"- swept training settings: {', '.join(swept)} (all of them under Provenance, training)")
    if config["same_runs_as"]:
        twins = "; ".join(f"{t['upsampling_mode']} {t['upsampling_ratio']:g}" for t in config["same_runs_as"])
        lines.append(f"- trained by the very same runs as: {twins} (BirdNET never upsamples at ratio 0.0)")
    lines += [
        f"- chosen: {selection['rule']}",
        f"- exported run: `{exported['run_id']}` (configuration {exported['index']}, seed {exported['seed']}, "
        f"validation AUPRC {_num(exported['val_auprc'])}): {selection['seed_rule']}",
        "- test metrics were not used to choose",
    ]
    if selection["validation_rank"] is not None:
        lines.append(f"- rank by mean validation AUPRC: {selection['validation_rank']} of {len(selection['ranking'])}")
    if selection["ranking"]:
        lines += ["", "Configurations by mean validation AUPRC:"]
        lines += ["", "| rank | dataset | mode | ratio | focal | mean validation AUPRC | seeds |",
                  "|---|---|---|---|---|---|---|"]
        for rank, entry in enumerate(selection["ranking"][:5], start=1):
            lines.append(f"| {rank} | {entry['dataset']} | {entry['upsampling_mode']} | {entry['upsampling_ratio']:g} "
                         f"| {'on' if entry['focal_loss'] else 'off'} | {_num(entry['mean_val_auprc'])} "
                         f"| {entry['seeds_completed']} |")
        if len(selection["ranking"]) > 5:
            lines.append(f"\n({len(selection['ranking']) - 5} more in model_card.json)")
    if selection["left_out"]:
        lines.append(f"\n{len(selection['left_out'])} configuration(s) could not compete (see model_card.json).")
    clips = metrics["test_clips"]
    lines += [
        "",
        f"## Test metrics ({clips['positive']} positive, {clips['negative']} negative test clips)",
        "",
        f"Mean over the configuration's seeds with a {metrics['confidence']:.0%} {metrics['interval']}.",
        "",
        "| metric | mean [95% interval] | exported run |",
        "|---|---|---|",
    ]
    for key, name in METRICS.items():
        lines.append(f"| {name} | {_ci(metrics[key])} | {_num(exported['test'][key])} |")
    target = found["precision_target"]
    lines += [
        f"| recall at precision >= {target:g} (threshold from validation) | {_ci(metrics['recall_at_target'])} "
        f"| {_num(found.get('test', {}).get('recall'))} |",
        f"| precision there | {_ci(metrics['precision_at_target'])} "
        f"| {_num(found.get('test', {}).get('precision'))} |",
        "",
        f"Recall at precision >= {target:g}: each seed's threshold is chosen on its own validation scores and then "
        "applied to the test set; a seed where no threshold reaches the target detects nothing (recall 0).",
        "",
        "## Threshold",
        "",
        threshold_line(found),
    ]
    if found["available"]:
        clips = found["validation_clips"]
        lines.append(f"(validation: {clips['positive']} positive and {clips['negative']} negative clips, precision "
                     f"{found['validation']['precision']:.3f}, recall {found['validation']['recall']:.3f}). "
                     f"A detection is a confidence at or above it: `--min-conf {found['min_conf']:.4f}`.")
    protocol = card["evaluation_protocol"]
    data = card["data"]
    lines += [
        "",
        "## Evaluation protocol",
        "",
        f"`{protocol['name']}`: {protocol['meaning']}.",
        "",
        "## Provenance",
        "",
        f"- data: `{data['source']}`; dataset `{data['dataset']['name']}` fingerprint "
        f"`{data['dataset']['data_fingerprint']}` ({data['dataset']['positive_files']} positive, "
        f"{data['dataset']['negative_files']} negative files); test fingerprint `{data['test']['data_fingerprint']}` "
        f"({data['test']['positive_files']} positive, {data['test']['negative_files']} negative files)",
        f"- base model: `{card['model']['base']['model']}`, sha256 `{card['model']['base']['sha256']}`",
        "- versions: " + "; ".join(", ".join(f"{k} {v}" for k, v in found_versions.items())
                                   for found_versions in card["versions"]),
        "- training: " + ", ".join(f"{k} {v}" for k, v in card["training"].items()),
    ]
    return "\n".join(lines) + "\n"
