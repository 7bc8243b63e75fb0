"""`hpc-radr export`: the classifier of the configuration with the best validation AUPRC, as a folder BirdNET-Analyzer
reads (``.tflite`` + one-line ``_Labels.txt``) with its model card."""

from __future__ import annotations

from pathlib import Path

import typer

from hpc_radr.cli.output import console, emit_json, user_errors


def export(
    run_dir: Path | None = typer.Argument(None, help="Run directory [default: runs/latest]."),
    config: int | None = typer.Option(None, "--config", min=0, help="Export configuration INDEX (the index of "
                                      "`hpc-radr plan` and results.csv) and that very run, instead of choosing."),
    out: Path | None = typer.Option(None, "--out", help="Folder to write [default: RUN_DIR/export/<run id>]."),
    precision_target: float = typer.Option(0.9, "--precision-target",
                                           help="The card's threshold: most recall at this precision or more, "
                                                "chosen on the run's validation scores."),
    force: bool = typer.Option(False, "--force", help="Replace the output folder if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the folder and the model card as JSON."),
) -> None:
    """Choose the configuration with the highest validation AUPRC averaged over its seeds (test metrics are never
    used; only configurations whose every seed completed compete; ties go to the lowest index), export its
    median seed's classifier, and write a model card (Markdown and JSON): test metrics with 95% t-intervals over
    seeds, a threshold for the target precision chosen on validation, fingerprints, versions and protocol."""
    from hpc_radr.export import export as write_export
    from hpc_radr.latest import resolve_run_dir
    from hpc_radr.model_card import threshold_line

    with user_errors():
        done = write_export(resolve_run_dir(run_dir), config, out, precision_target, force)
    card = done.card
    if as_json:
        emit_json({"folder": str(done.folder), "card": card})
        return
    setting, run, tests = card["configuration"], card["exported_run"], card["test_metrics"]
    chosen = f"by hand (--config {config})" if card["selection"]["how"] != "validation" else (
        f"by validation AUPRC {card['selection']['ranking'][0]['mean_val_auprc']:.3f} (mean over "
        f"{card['selection']['ranking'][0]['seeds_completed']} seeds; {len(card['selection']['ranking'])} "
        "configurations competed)")
    auprc = tests["auprc"]
    interval = (f"[{auprc['ci_low']:.3f}, {auprc['ci_high']:.3f}]" if auprc["n"] >= 2 else "(one seed: no interval)")
    lines = [
        f"exported {run['run_id']} into {done.folder}",
        f"configuration: {setting['dataset']}, {setting['upsampling_mode']} x{setting['upsampling_ratio']:g}, "
        f"focal loss {'on' if setting['focal_loss'] else 'off'}; chosen {chosen}",
        f"exported seed {run['seed']}: {card['selection']['seed_rule']}",
        f"test AUPRC {auprc['mean']:.3f} {interval} over {auprc['n']} seeds "
        f"(protocol {card['evaluation_protocol']['name']})",
        threshold_line(card["threshold"]),
        f"files: {card['classifier']['file']}, {card['classifier']['labels_file']}, model_card.md, model_card.json",
    ]
    found = card["threshold"]
    hint = f" --min-conf {found['min_conf']:.4f}" if found["available"] else ""
    lines.append(f"next: hpc-radr analyze AUDIO... --classifier {done.folder}{hint}")
    for line in lines:
        console.print(line, markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(export)
