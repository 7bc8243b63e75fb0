"""One real BirdNET-Analyzer training run on cached embeddings, evaluated on the untouched test set.

Uses BirdNET's own ``build_linear_classifier``, ``train_linear_classifier`` (upsampling, focal loss, early
stopping) and ``evaluate_model``. Replaced: BirdNET's save step (it needs the full V2.4 SavedModel, which is
not available offline, and fails before evaluation); the trained head is exported to TFLite instead. Unless the
sweep asks for BirdNET's own (``upsampling_implementation = "birdnet"``), its ``model.upsampling`` is replaced
for the fit by ``hpc_radr.birdnet.upsampling``, which returns the same arrays without the quadratic smote.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hpc_radr.atomic import plain, write_atomic
from hpc_radr.birdnet import upsampling as fast
from hpc_radr.embedding_cache import Embeddings
from hpc_radr.results import RunScores
from hpc_radr.sweep import Configuration, TrainingSettings


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far (the kernel's high-water mark, ru_maxrss, in MB): read at the
    end of each phase, it tells which phase set the peak a memory request must cover."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _counts(y: np.ndarray) -> dict[str, int]:
    positives = int(np.asarray(y)[:, 0].sum()) if len(y) else 0
    return {"positive": positives, "negative": int(len(y) - positives)}


@contextmanager
def _observe_split_and_upsampling(model_module, implementation: str, seed: int, held_out: list,
                                  ) -> Iterator[tuple[dict, dict]]:
    """Run the chosen upsampling in BirdNET's place and record the sample counts BirdNET trains on (after its
    validation split and after upsampling) and what upsampling did: which implementation, the samples it added,
    its seconds, and for the fast smote the anchors whose ties needed BirdNET's full sort. ``seed``: BirdNET's
    ``cfg.RANDOM_SEED``. ``held_out`` receives BirdNET's validation split (x, y), whose scores the result keeps."""
    seen: dict = {}
    upsampled: dict = {"implementation": implementation, "called": False}
    split, upsample = model_module.random_split, model_module.upsampling

    def recording_split(x, y, val_ratio=0.2):
        x_train, y_train, x_val, y_val = split(x, y, val_ratio)
        seen["fit_before_upsampling"] = _counts(y_train)
        seen["validation"] = _counts(y_val)
        held_out.extend((x_val, y_val))
        return x_train, y_train, x_val, y_val

    def recording_upsampling(x, y, ratio=0.5, mode="repeat"):
        seen.setdefault("fit_before_upsampling", _counts(y))
        started, cpu_started = time.perf_counter(), time.process_time()
        if implementation == "fast":
            stats = fast.UpsamplingStats()
            x_up, y_up = fast.upsampling(x, y, ratio, mode, seed=seed, stats=stats)
            upsampled.update(anchors=stats.anchors, fallback_anchors=stats.fallback_anchors,
                             fallback_samples=stats.fallback_samples)
        else:
            x_up, y_up = upsample(x, y, ratio, mode)
        upsampled.update(called=True, seconds=time.perf_counter() - started,
                         cpu_seconds=time.process_time() - cpu_started, peak_rss_mb=_peak_rss_mb(),
                         synthetic=len(y_up) - len(y))
        seen["fit_after_upsampling"] = _counts(y_up)
        return x_up, y_up

    model_module.random_split, model_module.upsampling = recording_split, recording_upsampling
    try:
        yield seen, upsampled
    finally:
        model_module.random_split, model_module.upsampling = split, upsample


def train_and_evaluate(config: Configuration, settings: TrainingSettings, train: Embeddings,
                       test: Embeddings, model_out: Path | None) -> dict:
    """Train one configuration with real seeds and return everything its result file records."""
    import birdnet_analyzer.config as cfg
    import keras
    from birdnet_analyzer import model as bn_model
    from birdnet_analyzer.train.utils import evaluate_model

    # BirdNET has no seed flag: RANDOM_SEED drives its numpy RNG (shuffle, split, upsampling),
    # Keras' seed drives weight init and batch shuffling. Both are needed for reproducible runs.
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    cfg.RANDOM_SEED = config.seed
    cfg.BINARY_CLASSIFICATION, cfg.MULTI_LABEL = True, False

    held_out = settings.evaluation == "held_out"
    empty = np.array([], dtype="float32")
    validation = (empty, empty) if held_out else (test.x, test.y)
    timings: dict[str, float | None] = {}

    # process CPU beside each wall time: a benchmark reads CPU-seconds per phase from the result file, which
    # other people's load on a shared machine does not inflate as it does wall times
    started, cpu_started = time.perf_counter(), time.process_time()
    classifier = bn_model.build_linear_classifier(train.y.shape[1], train.x.shape[1],
                                                  settings.hidden_units, settings.dropout)
    split: list[np.ndarray] = []
    with _observe_split_and_upsampling(bn_model, settings.upsampling_implementation, config.seed, split) as (
            counts, upsampled):
        classifier, history = bn_model.train_linear_classifier(
            classifier, train.x, train.y, *validation,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            val_split=settings.val_split if held_out else 0.0,
            upsampling_ratio=config.upsampling_ratio,
            upsampling_mode=config.upsampling_mode,
            train_with_mixup=False,
            train_with_label_smoothing=False,
            train_with_focal_loss=config.focal_loss,
            focal_loss_gamma=settings.focal_loss_gamma,
            focal_loss_alpha=settings.focal_loss_alpha,
        )
    timings["fit_s"] = time.perf_counter() - started  # upsampling included
    timings["fit_cpu_s"] = time.process_time() - cpu_started
    timings["upsample_s"] = upsampled.pop("seconds", 0.0)  # 0.0: never called (ratio 0.0)
    timings["upsample_cpu_s"] = upsampled.pop("cpu_seconds", 0.0)
    timings["peak_rss_after_upsample_mb"] = upsampled.pop("peak_rss_mb", None)  # None: never called
    timings["peak_rss_after_fit_mb"] = _peak_rss_mb()

    counts["dataset"] = _counts(train.y)
    counts.setdefault("fit_before_upsampling", counts["dataset"])
    counts.setdefault("fit_after_upsampling", counts["fit_before_upsampling"])
    counts.setdefault("validation", _counts(test.y))

    val_loss = history.history["val_loss"]
    best = int(np.argmin(val_loss))

    started, cpu_started = time.perf_counter(), time.process_time()
    classifier.pop()  # drop the sigmoid: evaluate_model applies BirdNET's own flat_sigmoid to logits
    metrics = evaluate_model(classifier, test.x, test.y, test.labels)
    x_val, y_val = split if held_out else (test.x, test.y)
    scores = RunScores(test=_scores(bn_model, classifier, test.x), test_positive=test.y[:, 0] == 1,
                       validation=_scores(bn_model, classifier, x_val), validation_positive=y_val[:, 0] == 1,
                       validation_source="held_out_split" if held_out else "test_set")
    timings["evaluate_s"] = time.perf_counter() - started
    timings["evaluate_cpu_s"] = time.process_time() - cpu_started
    timings["peak_rss_after_evaluate_mb"] = _peak_rss_mb()
    label = test.labels[0]
    per_class = metrics["class_metrics"][label]

    if model_out is not None:
        started, cpu_started = time.perf_counter(), time.process_time()
        export_tflite(classifier, model_out)
        timings["export_s"] = time.perf_counter() - started
        timings["export_cpu_s"] = time.process_time() - cpu_started

    return plain({
        "test": {
            "precision": per_class["precision_default"],
            "recall": per_class["recall_default"],
            "f1": per_class["f1_default"],
            "precision_opt": per_class["precision_opt"],
            "recall_opt": per_class["recall_opt"],
            "f1_opt": per_class["f1_opt"],
            "threshold_opt": per_class["threshold"],
            "auprc": per_class["auprc"],
            "auroc": per_class["auroc"],
            "tp": per_class["tp"], "fp": per_class["fp"], "tn": per_class["tn"], "fn": per_class["fn"],
            "n_positive": test.n_positive,
            "n_negative": test.n_negative,
        },
        "validation_at_best_epoch": {
            "auprc": history.history["val_AUPRC"][best],
            "auroc": history.history["val_AUROC"][best],
            "loss": val_loss[best],
        },
        "epochs_run": len(val_loss),
        "best_epoch": best + 1,
        "history": {k: list(v) for k, v in history.history.items()},
        "sample_counts": counts,
        "upsampling": upsampled,
        "timings": timings,
    }) | {"scores": scores.as_record()}


def _scores(bn_model, classifier, x: np.ndarray) -> np.ndarray:
    """Per-clip scores as ``evaluate_model`` computes them (BirdNET's flat sigmoid of the head's logits)."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.float32)
    logits = classifier.predict(x, verbose=0)
    return np.asarray(bn_model.flat_sigmoid(logits, sensitivity=-1, bias=1.0), dtype=np.float32)[:, 0]


def export_tflite(classifier, path: Path) -> None:
    """The trained head alone as TFLite (a few KB), usable as a BirdNET custom classifier (logits out)."""
    import tensorflow as tf

    converted = tf.lite.TFLiteConverter.from_keras_model(classifier).convert()
    write_atomic(path, lambda handle: handle.write(converted))
