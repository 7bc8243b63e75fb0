"""BirdNET 2.4's ``model.upsampling`` against ``hpc_radr.birdnet.upsampling``, per mode and size, in one process.

``python -m benchmarks.upsampling OUT.json`` (``benchmarks.run --sections upsampling`` runs it and renders the
tables). Random 1024-d float32 embeddings, positives shifted by 0.5 so the classes overlap, ratio 1.0, seed 1.
Each call is timed (wall and this process's CPU, BLAS threads included) and both outputs are compared with
``np.array_equal``. A call is repeated (median) only while its repeats stay under 20 s: BirdNET's smote at 11,000
samples runs once. Above ``--birdnet-smote-max`` samples BirdNET's smote is not run (about 45 min at 27,000):
its cost is estimated from BirdNET's neighbour search timed on sampled anchors, whose neighbours are also
compared with the fast search's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.measure import system_busy_seconds
from hpc_radr.birdnet.neighbours import birdnet_neighbours, nearest_neighbours
from hpc_radr.birdnet.upsampling import MODES, UpsamplingStats, upsampling

SIZES = ((2_200, 200), (11_000, 1_000), (27_000, 7_200))  # the last: 100x the demo data's 72 positives
DIM, RATIO, SEED, SHIFT = 1024, 1.0, 1, 0.5
REPEAT_BUDGET_S = 20.0
SAMPLED_ANCHORS = 20


def embeddings(n: int, positives: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    y = np.zeros((n, 1), dtype=np.float32)
    y[rng.choice(n, positives, replace=False)] = 1
    return (rng.standard_normal((n, DIM)) + SHIFT * y).astype(np.float32), y


def timed(call: Callable[[], object], repeats: int) -> tuple[object, dict]:
    """The call's result and its median wall / CPU seconds over up to ``repeats`` runs (fewer past the budget),
    with the CPU other processes used on the machine meanwhile."""
    walls, cpus, foreign = [], [], []
    while len(walls) < repeats and sum(walls) < REPEAT_BUDGET_S:
        busy, cpu, started = system_busy_seconds(), time.process_time(), time.perf_counter()
        result = call()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        foreign.append(max(0.0, system_busy_seconds() - busy))
    return result, {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "runs": len(walls),
                    "other_load_cpu_s": statistics.median(foreign)}


def estimate_birdnet_smote(x: np.ndarray, y: np.ndarray, synthetic: int) -> dict:
    """BirdNET's smote cost is one full neighbour search per synthetic sample: time it on sampled anchors."""
    anchors = np.random.default_rng(SEED).choice(np.flatnonzero(y[:, 0] == 1), SAMPLED_ANCHORS, replace=False)
    started = time.perf_counter()
    theirs = {int(a): birdnet_neighbours(x, int(a)) for a in anchors}
    per_sample = (time.perf_counter() - started) / len(anchors)
    ours, _ = nearest_neighbours(x, sorted(theirs))
    return {"wall_s": per_sample * synthetic, "per_sample_s": per_sample, "sampled_anchors": len(anchors),
            "neighbours_identical": all(np.array_equal(ours[a], theirs[a]) for a in theirs)}


def measure(repeats: int, birdnet_smote_max: int, log: Callable[[str], None]) -> dict:
    import birdnet_analyzer.config as cfg
    from birdnet_analyzer import model

    cfg.BINARY_CLASSIFICATION, cfg.RANDOM_SEED = True, SEED
    rows = []
    for n, positives in SIZES:
        x, y = embeddings(n, positives)
        for mode in MODES:
            stats = UpsamplingStats()
            (fast_x, fast_y), fast = timed(partial(upsampling, x, y, RATIO, mode, seed=SEED, stats=stats), repeats)
            row = {"samples": n, "positives": positives, "mode": mode, "synthetic": stats.synthetic,
                   "anchors": stats.anchors, "fallback_anchors": stats.fallback_anchors,
                   "fallback_samples": stats.fallback_samples, "fast": fast}
            if mode != "smote" or n <= birdnet_smote_max:
                (own_x, own_y), own = timed(partial(model.upsampling, x, y, RATIO, mode), repeats)
                same = np.array_equal(own_x, fast_x) and np.array_equal(own_y, fast_y) and own_x.dtype == fast_x.dtype
                row.update(birdnet=own, identical=bool(same), speedup=own["wall_s"] / fast["wall_s"])
            else:
                estimate = estimate_birdnet_smote(x, y, stats.synthetic)
                row.update(birdnet_estimate=estimate, speedup=estimate["wall_s"] / fast["wall_s"])
            rows.append(row)
            shown = row.get("birdnet", row.get("birdnet_estimate"))
            log(f"upsampling: {n:,} samples, {mode}: BirdNET {shown['wall_s']:.2f} s"
                f"{' (estimated)' if 'birdnet_estimate' in row else ''}, fast {fast['wall_s']:.3f} s")
    return {"dim": DIM, "ratio": RATIO, "seed": SEED, "shift": SHIFT, "sizes": [list(s) for s in SIZES],
            "birdnet_smote_max": birdnet_smote_max, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.upsampling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="where to write the JSON measurements")
    parser.add_argument("--repeats", type=int, default=5, help="runs per call, median [default: %(default)s]")
    parser.add_argument("--birdnet-smote-max", type=int, default=11_000,
                        help="largest size at which BirdNET's own smote is run [default: %(default)s]")
    args = parser.parse_args(argv)
    found = measure(args.repeats, args.birdnet_smote_max,
                    lambda message: print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True))
    args.out.write_text(json.dumps(found, indent=2) + "\n")


if __name__ == "__main__":
    main()
