"""One configuration the naive way: what a plain ``sbatch --array=0-107`` of BirdNET training commands does.

Every configuration (all 108, the ratio-0.0 duplicates included) runs in its own fresh process, which
imports TensorFlow, extracts its own embeddings with BirdNET's ``_load_training_data`` from the dataset
folder and the test folder (no cache), and trains. The fit is hpc-radr's own
``hpc_radr.birdnet.training.train_and_evaluate`` (BirdNET's classifier, training, evaluation and the TFLite
export), so only the structure differs from hpc-radr's sweep, not the work of a run.

    python -m benchmarks.naive --sweep SWEEP --index I --epochs E --train-folder DIR --test-folder DIR --out DIR
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", type=Path, required=True)
    parser.add_argument("--index", type=int, required=True, help="configuration index, no deduplication (0-107)")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--train-folder", type=Path, required=True,
                        help="BirdNET class folders of the configuration's dataset")
    parser.add_argument("--test-folder", type=Path, required=True, help="BirdNET class folders of the test set")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1, help="CPUs of this array task (TensorFlow, extraction)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    from hpc_radr.birdnet import runtime, training
    from hpc_radr.birdnet.model_files import default_model
    from hpc_radr.embedding_cache import Embeddings
    from hpc_radr.manifest import apply_overrides
    from hpc_radr.sweep import expand, load_sweep

    sweep, _ = load_sweep(args.sweep)
    sweep = apply_overrides(sweep, {"epochs": args.epochs})
    config = expand(sweep, dedupe=False)[args.index]
    settings = sweep.training
    runtime.limit_threads(args.threads)  # imports TensorFlow
    import birdnet_analyzer.config as cfg
    from birdnet_analyzer.train.utils import _load_training_data

    runtime.configure(default_model(), settings.crop_mode, settings.overlap, args.threads)
    import_s = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / f"{args.index:03d}.log"
    with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        began = time.perf_counter()
        cfg.TRAIN_DATA_PATH, cfg.TEST_DATA_PATH = str(args.train_folder), str(args.test_folder)
        x, y, x_test, y_test, labels = _load_training_data(cache_mode=None)
        extract_s = time.perf_counter() - began
        outcome = training.train_and_evaluate(config, settings, Embeddings(x, y, list(labels)),
                                              Embeddings(x_test, y_test, list(labels)),
                                              args.out / f"{args.index:03d}.tflite")
    outcome["timings"].update(process_import_s=import_s, extract_s=extract_s,
                              clips=int(len(x) + len(x_test)))
    record = {"configuration": config.as_dict(), **outcome}
    (args.out / f"{args.index:03d}.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
