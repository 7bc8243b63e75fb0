"""The sweep's phases at 1x, 10x and 100x the demo's training size, for one dataset: does cost grow linearly?

Issue #11 asks for studies at the size labs have (100x the demo) with cost that grows linearly. This section
measures, per size, every phase a run goes through: extraction (`hpc-radr run-task --first-clip`), upsampling
(linear, mean, smote, ratio 1.0), fit, evaluation (each from the result file's per-phase CPU timings of one
`hpc-radr run-task --run K --force --threads 2`) and `hpc-radr collect`; CPU-seconds and peak memory of each.

1x and 10x are real demo audio, extracted for real. At 100x the clips are not extracted (about 40,000 of them
would take over an hour here): the embeddings are drawn from the 10x real ones, per class, with small Gaussian
jitter (real neighbourhoods, overlapping classes), and written into the run directory's caches as
``benchmarks.run.large_training_run`` does. Extraction at 100x is extrapolated: the per-clip CPU measured at 10x
times the unique clips. Every fit runs a fixed number of epochs (``EPOCHS``), which early stopping (patience 5
at most epochs) cannot cut short, so fit costs are comparable per epoch across sizes; ``epochs_run`` is recorded.

Growth exponent per phase from 10x to 100x: log(cpu_100 / cpu_10) / log(n_100 / n_10), n = training samples
(the dataset's clips). 1.0 is linear; the issue's target is <= 1.15 for every phase, and smote's upsampling at
100x <= 10% of its run's fit.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

from benchmarks import measure

DATASET = "high_medium_low"  # the larger of the demo's two datasets (the other is a subset of its clips)
MODES = ("linear", "mean", "smote")
RATIO = 1.0
EPOCHS = 5  # BirdNET's early-stopping patience is max(5, epochs // 10) >= EPOCHS: every fit runs all of them
JITTER = 0.05  # Gaussian noise, as a fraction of each feature's standard deviation within its class
EXPONENT_TARGET = 1.15
SMOTE_SHARE_TARGET = 0.10
SWEEP_EPOCHS = 50  # the sweep's own epochs (jobs/imbalance_regularization.toml): smote's share of such a fit
TEST_UNIT = "test"


def _positions(manifest) -> dict[str, int]:
    """Position in the manifest's unique runs of each mode's run: DATASET, ratio 1.0, no focal loss, seed 1."""
    found = {}
    for k, c in enumerate(manifest.runs):
        if (c.dataset == DATASET and c.upsampling_ratio == RATIO and not c.focal_loss and c.seed == 1
                and c.upsampling_mode in MODES):
            found[c.upsampling_mode] = k
    return found


def _train(ctx: dict, run_dir: Path, position: int) -> dict:
    """One training task measured from outside (CPU, memory of its tree) and its phases from its result file."""
    done = measure.run([*ctx["hpc_radr"], "run-task", run_dir, "--run", position, "--force", "--threads", 2],
                       env=ctx["env"], cwd=ctx["repo"], capture=True, memory=True)
    from hpc_radr.manifest import load
    from hpc_radr.run_dir import RunDir

    run_id = load(RunDir(run_dir)).runs[position].run_id
    record = json.loads((run_dir / "results" / f"{run_id}.json").read_text())
    return {"task": done.as_dict(), "run_id": run_id, "timings": record["timings"],
            "epochs_run": record["epochs_run"], "sample_counts": record["sample_counts"],
            "upsampling": record["upsampling"], "test_auprc": record["test"]["auprc"]}


def _collect(ctx: dict, run_dir: Path) -> dict:
    done = measure.run([*ctx["hpc_radr"], "collect", run_dir], env=ctx["env"], cwd=ctx["repo"], capture=True,
                       memory=True)
    return done.as_dict()


def _unit_size(manifest, name: str) -> dict:
    unit = manifest.units[name]
    return {"positives": len(unit.positives), "negatives": len(unit.negatives)}


def _real(ctx: dict, name: str, data: Path, log: Callable[[str], None]) -> dict:
    """A size on real audio: prepare, extract every clip of the sweep (the dataset's and the test set's), train
    each mode's run, collect."""
    from hpc_radr import clip_store
    from hpc_radr.submission import prepare

    run_dir = ctx["work"] / f"data-scale-{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    manifest = prepare(ctx["sweep"], run_dir, data, None, dedupe=True, overrides={"epochs": EPOCHS}, write=True)
    clips = len(clip_store.sweep_clips(manifest, clip_store.clip_keys(manifest)))
    log(f"data-scale {name}: extracting {clips:,} clips (run-task --first-clip, 2 workers)")
    done = measure.run([*ctx["hpc_radr"], "run-task", run_dir, "--first-clip", 0, "--clip-count", clips],
                       env={**ctx["env"], "SLURM_CPUS_PER_TASK": "2"}, cwd=ctx["repo"], capture=True, memory=True)
    stats = clip_store.ClipStore(manifest.run_dir).extractions()
    extraction = {"source": "measured", "clips": clips, "task": done.as_dict(),
                  "cpu_s": done.cpu_s, "cpu_per_clip_s": done.cpu_s / clips,
                  "store_extract_cpu_s": sum(s["extract_cpu_s"] for s in stats),
                  "peak_rss_mb": done.tree_peak_rss_mb, "peak_pss_mb": done.tree_peak_pss_mb}
    return {"run_dir": str(run_dir), "embeddings": "extracted from the demo audio", "clips": clips,
            "dataset": _unit_size(manifest, DATASET), "test": _unit_size(manifest, TEST_UNIT),
            "extraction": extraction, **_train_and_collect(ctx, name, run_dir, manifest, log)}


def _train_and_collect(ctx: dict, name: str, run_dir: Path, manifest, log: Callable[[str], None]) -> dict:
    runs = {}
    for mode, position in _positions(manifest).items():
        log(f"data-scale {name}: training {mode} at ratio {RATIO} ({EPOCHS} epochs)")
        runs[mode] = _train(ctx, run_dir, position)
    log(f"data-scale {name}: collect")
    return {"runs": runs, "collect": _collect(ctx, run_dir)}


def _resampled(source, factor: int, rng):
    """``factor`` times as many embeddings as ``source``, drawn per class from its rows with Gaussian jitter of
    JITTER x the class's per-feature spread: new points near real ones, classes overlapping as the real ones do."""
    import numpy as np

    from hpc_radr.embedding_cache import Embeddings

    xs, ys = [], []
    for label in (1.0, 0.0):
        rows = source.x[source.y[:, 0] == label]
        picked = rows[rng.integers(0, len(rows), len(rows) * factor)]
        noise = rng.standard_normal(picked.shape, dtype=np.float32) * (JITTER * rows.std(axis=0))
        xs.append((picked + noise).astype(np.float32))
        ys.append(np.full((len(picked), 1), label, dtype=np.float32))
    order = rng.permutation(sum(len(x) for x in xs))
    return Embeddings(np.concatenate(xs)[order], np.concatenate(ys)[order], list(source.labels))


def _drawn(ctx: dict, name: str, factor: int, real: dict, data: Path, log: Callable[[str], None]) -> dict:
    """A size whose embeddings are drawn from a real size's (``factor`` times as many), extraction extrapolated."""
    import numpy as np

    from hpc_radr import embedding_cache
    from hpc_radr.manifest import load
    from hpc_radr.run_dir import RunDir
    from hpc_radr.submission import prepare

    source = load(RunDir(Path(real["run_dir"])))
    run_dir = ctx["work"] / f"data-scale-{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    manifest = prepare(ctx["sweep"], run_dir, data, None, dedupe=True, overrides={"epochs": EPOCHS}, write=True)
    rng = np.random.default_rng(11)
    sizes = {}
    for unit in (DATASET, TEST_UNIT):
        key = source.units[unit].key
        drawn = _resampled(embedding_cache.load(source.run_dir.cache_file(key), key), factor, rng)
        embedding_cache.save(manifest.run_dir.cache_file(manifest.units[unit].key), drawn,
                             manifest.units[unit].key)
        sizes[unit] = {"positives": drawn.n_positive, "negatives": drawn.n_negative}
    log(f"data-scale {name}: drew {sizes[DATASET]} training and {sizes[TEST_UNIT]} test embeddings from the "
        "real ones with jitter")
    clips = real["clips"] * factor
    per_clip = real["extraction"]["cpu_per_clip_s"]
    extraction = {"source": "extrapolated", "clips": clips, "cpu_per_clip_s": per_clip, "cpu_s": per_clip * clips,
                  "from": f"CPU per clip measured at {real['name']} ({real['clips']:,} clips in one task) x clips",
                  # extraction tasks are shards of at most DEFAULT_SHARD_CLIPS clips: a task's peak does not grow
                  "peak_rss_mb": None, "peak_pss_mb": None}
    return {"run_dir": str(run_dir), "clips": clips, "dataset": sizes[DATASET], "test": sizes[TEST_UNIT],
            "embeddings": f"drawn from the {real['name']} real embeddings per class, {factor}x, Gaussian jitter "
                          f"{JITTER} x the class's per-feature standard deviation; not extracted",
            "extraction": extraction, **_train_and_collect(ctx, name, run_dir, manifest, log)}


def _peak(task: dict) -> float:
    """A measured command's peak memory (MB): the larger of its tree's sampled summed RSS and its largest
    process's ru_maxrss (a short peak can fall between two 0.1-s samples; the kernel's high-water mark cannot)."""
    return max(task["tree_peak_rss_mb"] or 0.0, task["max_rss_mb"])


def phases(size: dict) -> dict[str, dict]:
    """CPU-seconds and peak memory (MB) of every phase of one size. Upsampling and fit read from the result
    files (process CPU per phase; the fit without its upsampling); memory: the training task's high-water mark
    at the end of the phase, and the whole task's sampled tree RSS."""
    found = {"extract": {"cpu_s": size["extraction"]["cpu_s"], "peak_rss_mb": size["extraction"]["peak_rss_mb"],
                         "source": size["extraction"]["source"]}}
    for mode, run in size["runs"].items():
        t = run["timings"]
        found[f"upsample {mode}"] = {"cpu_s": t["upsample_cpu_s"], "peak_rss_mb": t["peak_rss_after_upsample_mb"]}
        fit = t["fit_cpu_s"] - t["upsample_cpu_s"]
        found[f"fit {mode}"] = {"cpu_s": fit, "peak_rss_mb": t["peak_rss_after_fit_mb"],
                                "per_epoch_cpu_s": fit / run["epochs_run"]}
        found[f"evaluate {mode}"] = {"cpu_s": t["evaluate_cpu_s"], "peak_rss_mb": t["peak_rss_after_evaluate_mb"]}
        found[f"training task {mode}"] = {"cpu_s": run["task"]["cpu_s"], "peak_rss_mb": _peak(run["task"])}
    found["collect"] = {"cpu_s": size["collect"]["cpu_s"], "peak_rss_mb": _peak(size["collect"])}
    return found


def growth(sizes: dict[str, dict], low: str, high: str) -> dict:
    """Per phase: the growth exponent of CPU from ``low`` to ``high`` (n = training samples) and of peak memory;
    smote's upsampling as a share of its fit at ``high``; whether the issue's targets are met."""
    n_low, n_high = (sum(sizes[k]["dataset"].values()) for k in (low, high))
    span = math.log(n_high / n_low)
    a, b = phases(sizes[low]), phases(sizes[high])
    exponents = {}
    for phase in b:
        cpu_low, cpu_high = a[phase]["cpu_s"], b[phase]["cpu_s"]
        exponents[phase] = {
            "cpu": math.log(cpu_high / cpu_low) / span if cpu_low > 0 and cpu_high > 0 else None,
            "memory": (math.log(b[phase]["peak_rss_mb"] / a[phase]["peak_rss_mb"]) / span
                       if a[phase].get("peak_rss_mb") and b[phase].get("peak_rss_mb") else None),
            "extrapolated": b[phase].get("source") == "extrapolated"}
    smote = b.get("upsample smote", {}).get("cpu_s")
    fit = b.get("fit smote", {}).get("cpu_s")
    share = smote / fit if smote is not None and fit else None
    per_epoch = b.get("fit smote", {}).get("per_epoch_cpu_s")
    # the same upsampling against a fit of the sweep's epochs (per-epoch CPU x epochs; early stopping may end it
    # sooner): the 5-epoch fit here is short on purpose, which makes smote's share look 10x larger than a sweep's
    share_sweep = smote / (per_epoch * SWEEP_EPOCHS) if smote is not None and per_epoch else None
    measured = [e["cpu"] for e in exponents.values() if e["cpu"] is not None and not e["extrapolated"]]
    return {"from": low, "to": high, "n": [n_low, n_high], "exponents": exponents,
            "max_exponent": max(measured) if measured else None,
            "exponent_target": EXPONENT_TARGET, "exponents_met": bool(measured) and max(measured) <= EXPONENT_TARGET,
            "smote_share_of_fit": share, "smote_share_target": SMOTE_SHARE_TARGET,
            "smote_share_met": share is not None and share <= SMOTE_SHARE_TARGET,
            "smote_share_of_sweep_epochs_fit": share_sweep, "sweep_epochs": SWEEP_EPOCHS}


def memory_model(sizes: dict[str, dict], low: str, high: str) -> dict:
    """Peak memory per job kind as a line in the data size, through the two largest sizes: what job_plan's
    memory defaults are derived from. Training: the largest training task's peak (``_peak``) per training sample;
    collect: its RSS per training sample (result files grow with the test and validation scores); extraction:
    per clip of a task (measured at ``low``, the last real size)."""
    model = {}
    n = {k: sum(sizes[k]["dataset"].values()) for k in (low, high)}
    for kind, value in (("train", lambda s: max(_peak(r["task"]) for r in s["runs"].values())),
                        ("collect", lambda s: _peak(s["collect"]))):
        y_low, y_high = value(sizes[low]), value(sizes[high])
        slope = (y_high - y_low) / (n[high] - n[low])
        model[kind] = {"per_sample_mb": slope, "base_mb": y_low - slope * n[low], "at": {low: y_low, high: y_high},
                       "samples": n}
    model["embed"] = {"peak_rss_mb": sizes[low]["extraction"]["peak_rss_mb"], "clips": sizes[low]["clips"]}
    return model


def run(ctx: dict, data_1x: Path, data_10x: Path, log: Callable[[str], None]) -> dict:
    """Every size, its phases and the growth from 10x to 100x. ``ctx``: work, env, repo, hpc_radr, sweep."""
    sizes: dict[str, dict] = {}
    for name, data in (("1x", data_1x), ("10x", data_10x)):
        sizes[name] = {"name": name, **_real(ctx, name, data, log)}
    sizes["100x"] = {"name": "100x", **_drawn(ctx, "100x", 10, sizes["10x"], data_1x, log)}
    return {"dataset": DATASET, "modes": list(MODES), "ratio": RATIO, "epochs": EPOCHS, "jitter": JITTER,
            "sizes": sizes, "phases": {k: phases(v) for k, v in sizes.items()},
            "growth": growth(sizes, "10x", "100x"), "growth_1x_10x": growth(sizes, "1x", "10x"),
            "memory_model": memory_model(sizes, "10x", "100x")}
