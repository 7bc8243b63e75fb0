"""The benchmark harness: ``.venv/bin/python -m benchmarks.run [--quick] [--out benchmarks/results]``.

Sections (all by default; ``--sections`` picks some):

  sweep     hpc-radr's whole sweep (`hpc-radr submit --executor local --workers 2 --epochs E`) on the
            synthetic demo data, and its floor (extraction of every unit + fit of every unique run)
  naive     every configuration (all 108) in its own fresh process that extracts its own embeddings and
            trains (benchmarks/naive.py), two at a time; a seeded sample of K is extrapolated to 108
  overhead  per-run overhead with 1 run per process and N runs per process (`hpc-radr run-task`)
  cli       `hpc-radr --help`, `status`, `collect` on the demo-sized run directory (median of >= 7), and
            proof that none imports TensorFlow
  scale     `status` on a 1,000-task array from recorded sacct/squeue output; `collect` on 10,000 results
  memory    peak memory of a training task and of an extraction task
  estimate  `plan --estimate` against the sweep it priced, on the demo data and on data 10x its size
            (benchmarks/estimate.py; about 20 min)
  upsampling  BirdNET's own upsampling against hpc-radr's exact fast one, per mode, at 2,200 / 11,000 / 27,000
            random embeddings (benchmarks/upsampling.py; BirdNET's smote at 11,000 alone takes minutes)
  data-scale  every phase of a run (extract, upsample, fit, evaluate, collect) at 1x, 10x and 100x the demo's
            training size, CPU-seconds and peak memory, and each phase's growth exponent from 10x to 100x
            (benchmarks/data_scale.py; 100x embeddings drawn from the 10x real ones). Not in the default run
            (it makes and extracts data 10x the demo's): ask for it with --sections data-scale

Writes OUT/latest.json and OUT/latest.md. CPU-seconds (the kernel's accounting of every process of a command's
tree) are the primary figure; wall times are reported beside them with the CPU other users spent meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

from benchmarks import machine, measure
from benchmarks.report import write_report

REPO = Path(__file__).resolve().parent.parent
SWEEP = REPO / "jobs" / "imbalance_regularization.toml"
CONFIGURATIONS = 108
SECTIONS = ("sweep", "naive", "overhead", "cli", "scale", "memory", "estimate", "upsampling", "data-scale")
DEFAULT_SECTIONS = tuple(s for s in SECTIONS if s != "data-scale")  # data-scale only when asked for
NEED_DEMO_DATA = {"sweep", "naive", "memory", "estimate", "data-scale"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def python() -> str:
    return str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable


def hpc_radr() -> list[str]:
    return [python(), "-m", "hpc_radr"]


def environment() -> dict:
    env = dict(os.environ)
    # librosa's JIT cache, warm and shared by both sides (the naive side would otherwise pay ~25 s per process)
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))
    for key in [k for k in env if k.startswith("SLURM_")]:
        del env[key]
    return env


def demo_size(quick: bool):
    from hpc_radr.demo_data import DemoSize

    return DemoSize(per_tier=8, negatives=60, test_per_tier=4, test_negatives=30) if quick else DemoSize()


def read_results(run_dir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((run_dir / "results").glob("*.json"))}


def fit_cpu(timings: dict) -> float:
    """CPU-seconds of the fit: its wall time scaled by the run's measured CPU share (run_cpu_s over the run's
    wall: cache load + fit + evaluate + export). Falls back to the wall time for results without run_cpu_s."""
    wall = sum(timings.get(k, 0.0) for k in ("cache_load_s", "fit_s", "evaluate_s", "export_s"))
    if "run_cpu_s" not in timings or wall <= 0:
        return timings["fit_s"]
    return timings["fit_s"] * timings["run_cpu_s"] / wall


# --------------------------------------------------------------------------------------------------- sections

def section_sweep(ctx: dict) -> dict:
    run_dir = ctx["work"] / "project"
    command = [*hpc_radr(), "submit", SWEEP, "--data", ctx["data"], "--run-dir", run_dir, "--executor", "local",
               "--workers", ctx["workers"], "--epochs", ctx["epochs"], "--json"]
    log(f"sweep: {' '.join(map(str, command[2:]))}")
    done = measure.run(command, env=ctx["env"], cwd=REPO, capture=True, memory=True, interval=0.5)
    outcome = json.loads(done.stdout)
    assert not outcome["failed"], outcome
    results = read_results(run_dir)
    from hpc_radr.clip_store import ClipStore
    from hpc_radr.run_dir import RunDir

    stats = ClipStore(RunDir(run_dir)).extractions()  # one record per extraction shard, each clip in one of them
    extract_cpu = sum(s["extract_cpu_s"] for s in stats)
    extract_wall = sum(s["extract_s"] for s in stats)
    fits = [r["timings"]["fit_s"] for r in results.values()]
    fits_cpu = [fit_cpu(r["timings"]) for r in results.values()]
    floor_cpu = extract_cpu + sum(fits_cpu)
    floor_wall = extract_wall + sum(fits) / ctx["workers"]
    per_run = {k: statistics.mean(r["timings"].get(k, 0.0) for r in results.values())
               for k in ("cache_load_s", "fit_s", "evaluate_s", "export_s", "run_cpu_s")}
    log(f"sweep: {len(results)} runs, {done.cpu_s:.0f} CPU-s, {done.wall_s:.0f} s wall; floor {floor_cpu:.0f} CPU-s")
    return {
        "command": done.command, "runs": len(results), "configurations": CONFIGURATIONS, "epochs": ctx["epochs"],
        "workers": ctx["workers"], "measured": done.as_dict(),
        "extraction": stats,
        "floor": {
            "extract_cpu_s": extract_cpu, "extract_wall_s": extract_wall,
            "fit_sum_s": sum(fits), "fit_cpu_sum_s": sum(fits_cpu),
            "cpu_s": floor_cpu, "wall_s": floor_wall,
            "definition": "extraction of every distinct clip (once) + fit of every unique run; no process "
                          "start, imports, cache loads, evaluation or export. Wall: extraction + fits / workers.",
        },
        "ratio_to_floor": {"cpu": done.cpu_s / floor_cpu, "wall": done.wall_s / floor_wall},
        "mean_per_run_s": per_run,
        "run_dir": str(run_dir),
    }


def section_naive(ctx: dict) -> dict:
    from hpc_radr.datasets import TEST_UNIT, inspect, materialize
    from hpc_radr.manifest import apply_overrides
    from hpc_radr.sweep import expand, load_sweep

    sweep, _ = load_sweep(SWEEP)
    sweep = apply_overrides(sweep, {"epochs": ctx["epochs"]})
    inventory = inspect(ctx["data"], sweep)
    folders = ctx["work"] / "naive-data"
    layout = {unit.name: materialize(unit, sweep.data.positive_class, sweep.data.negative_class, folders)
              for unit in inventory.units(sweep)}
    configurations = expand(sweep, dedupe=False)
    assert len(configurations) == CONFIGURATIONS
    k = ctx["naive_sample"] or CONFIGURATIONS
    chosen = sorted(random.Random(ctx["seed"]).sample(range(CONFIGURATIONS), k)) if k < CONFIGURATIONS \
        else list(range(CONFIGURATIONS))
    out = ctx["work"] / "naive"
    out.mkdir(parents=True, exist_ok=True)
    commands = [[python(), "-m", "benchmarks.naive", "--sweep", SWEEP, "--index", i, "--epochs", ctx["epochs"],
                 "--train-folder", layout[configurations[i].dataset], "--test-folder", layout[TEST_UNIT],
                 "--out", out, "--threads", 1] for i in chosen]
    logs = [out / f"{i:03d}.stdout" for i in chosen]
    log(f"naive: {k} of {CONFIGURATIONS} configurations, {ctx['workers']} at a time, 1 CPU each")
    batch = measure.run_batch(commands, ctx["workers"], env=ctx["env"], cwd=REPO, logs=logs,
                              progress=lambda n, total: log(f"naive: {n}/{total} done") if n % 6 == 0 else None)
    per_process = [m.cpu_s for m in batch.measured]
    timings = [json.loads((out / f"{i:03d}.json").read_text())["timings"] for i in chosen]
    extrapolated = k < CONFIGURATIONS
    cpu_total = statistics.mean(per_process) * CONFIGURATIONS
    wall_total = batch.wall_s * CONFIGURATIONS / k
    log(f"naive: {batch.cpu_s:.0f} CPU-s, {batch.wall_s:.0f} s wall for {k}; 108: {cpu_total:.0f} CPU-s")
    return {
        "sample": k, "indices": chosen, "extrapolated": extrapolated, "seed": ctx["seed"], "slots": ctx["workers"],
        "measured_cpu_s": batch.cpu_s, "measured_wall_s": batch.wall_s, "foreign_cpu_s": batch.foreign_cpu_s,
        "cpu_s_108": cpu_total, "wall_s_108": wall_total,
        "per_process": {
            "cpu_s_mean": statistics.mean(per_process), "cpu_s_min": min(per_process),
            "cpu_s_max": max(per_process), "wall_s_mean": statistics.mean(m.wall_s for m in batch.measured),
            "max_rss_mb": max(m.max_rss_mb for m in batch.measured),
            "import_s_mean": statistics.mean(t["process_import_s"] for t in timings),
            "extract_s_mean": statistics.mean(t["extract_s"] for t in timings),
            "fit_s_mean": statistics.mean(t["fit_s"] for t in timings),
            "clips_mean": statistics.mean(t["clips"] for t in timings),
        },
        "note": (f"extrapolated to {CONFIGURATIONS} from a seeded random sample of {k} configurations "
                 f"(seed {ctx['seed']}): CPU = mean per process x {CONFIGURATIONS}, wall = measured wall x "
                 f"{CONFIGURATIONS}/{k}") if extrapolated else f"measured: all {CONFIGURATIONS} configurations",
    }


def section_overhead(ctx: dict, sweep: dict | None) -> dict:
    run_dir = ctx["work"] / "project"
    if not (run_dir / "manifest.json").exists():
        raise RuntimeError("the overhead section needs the sweep section's run directory")
    from hpc_radr.manifest import load
    from hpc_radr.run_dir import RunDir

    manifest = load(RunDir(run_dir))
    n = ctx["overhead_runs"]
    positions = [j * len(manifest.runs) // n for j in range(n)]
    ids = [manifest.runs[p].run_id for p in positions]

    def timings(run_id: str) -> dict:
        return json.loads((run_dir / "results" / f"{run_id}.json").read_text())["timings"]

    def breakdown(done: measure.Measured, run_ids: list[str]) -> dict:
        found = [timings(r) for r in run_ids]
        fit_c = sum(fit_cpu(t) for t in found)
        fit_w = sum(t["fit_s"] for t in found)
        parts = {k: sum(t.get(k, 0.0) for t in found) for k in ("cache_load_s", "evaluate_s", "export_s")}
        import_s = found[0]["process_import_s"]
        accounted = import_s + fit_w + sum(parts.values())
        return {"runs": len(run_ids), "cpu_s": done.cpu_s, "wall_s": done.wall_s, "fit_cpu_s": fit_c,
                "fit_s": fit_w, "tensorflow_import_s": import_s, **parts,
                "start_and_rest_s": done.wall_s - accounted, "foreign_cpu_s": done.foreign_cpu_s,
                "overhead_cpu_s_per_run": (done.cpu_s - fit_c) / len(run_ids),
                "overhead_wall_s_per_run": (done.wall_s - fit_w) / len(run_ids)}

    log(f"overhead: {n} runs, one process each")
    single = []
    for position, run_id in zip(positions, ids, strict=True):
        done = measure.run([*hpc_radr(), "run-task", run_dir, "--run", position, "--force", "--threads", 1],
                           env=ctx["env"], cwd=REPO, capture=True)
        single.append(breakdown(done, [run_id]))
    log(f"overhead: {n} runs in one process")
    command = [*hpc_radr(), "run-task", run_dir, "--force", "--threads", 1]
    for position in positions:
        command += ["--run", position]
    multi = breakdown(measure.run(command, env=ctx["env"], cwd=REPO, capture=True), ids)
    one = {k: statistics.mean(s[k] for s in single) for k in single[0] if k != "runs"}
    result = {"positions": positions, "run_ids": ids, "one_run_per_process": single,
              "one_run_per_process_mean": one, "n_runs_per_process": multi}
    if sweep:
        result["in_the_sweep_cpu_s_per_run"] = (sweep["measured"]["cpu_s"] - sweep["floor"]["cpu_s"]) / sweep["runs"]
    return result


# `collect` keeps an up-to-date report; this is `collect` when the report must be built again (new results).
REBUILT = "collect, report rebuilt"


def _stale_report(run_dir: Path):
    """Remove report.json, the report's up-to-date mark, so the next `collect` builds the whole report."""
    return lambda: (Path(run_dir) / "report" / "report.json").unlink(missing_ok=True)


def section_cli(ctx: dict) -> dict:
    run_dir = ctx["work"] / "project"
    if not (run_dir / "manifest.json").exists():
        raise RuntimeError("the cli section needs the sweep section's run directory")
    repeats = ctx["repeats"]
    env = ctx["env"]
    figures: dict = {}
    commands = {
        "--help": [*hpc_radr(), "--help"],
        "status": [*hpc_radr(), "status", run_dir],
        "collect": [*hpc_radr(), "collect", run_dir],
        REBUILT: [*hpc_radr(), "collect", run_dir],
        "collect (merge only: hpc_radr.collect.collect)":
            [python(), "-c", f"from hpc_radr.collect import collect; collect({str(run_dir)!r})"],
    }
    for name, command in commands.items():
        log(f"cli: {name} x{repeats}")
        measure.run(command, env=env, cwd=REPO)  # warm the file cache once
        figures[name] = measure.repeat(command, repeats, before=_stale_report(run_dir) if name == REBUILT else None,
                                       env=env, cwd=REPO)
    parts = measure.run([python(), "-m", "benchmarks.collect_parts", run_dir], env=env, cwd=REPO, capture=True)
    figures["collect breakdown (one process)"] = json.loads(parts.stdout.strip().splitlines()[-1])
    proof = {}
    for name, args in (("--help", ["--help"]), ("status", ["status", str(run_dir)]),
                       ("collect", ["collect", str(run_dir)])):
        out = ctx["work"] / f"probe-{name.strip('-')}.json"
        measure.run([python(), "-m", "benchmarks.probe", out, *args], env=env, cwd=REPO)
        probe = json.loads(out.read_text())
        timing = measure.run([python(), "-X", "importtime", "-m", "hpc_radr", *args], env=env, cwd=REPO,
                             capture=True)
        imported = [line.rsplit("|", 1)[-1].strip() for line in timing.stderr.splitlines()
                    if line.startswith("import time:")]
        proof[name] = {"sys_modules": probe["imported"],
                       "importtime_modules": len(imported),
                       "importtime_tensorflow": any(m.split(".")[0] in ("tensorflow", "keras", "birdnet_analyzer")
                                                    for m in imported)}
    figures["no_tensorflow"] = proof
    return figures


def section_scale(ctx: dict) -> dict:
    from benchmarks import scale

    template = ctx.get("template")
    if template is None:
        source = ctx["work"] / "project" / "results"
        found = sorted(source.glob("*.json")) or sorted((REPO / "runs" / "demo" / "results").glob("*.json"))
        if not found:
            raise RuntimeError("the scale section needs one real result file (run the sweep section first)")
        template = json.loads(found[0].read_text())
    work = ctx["work"] / "scale"
    repeats = ctx["scale_repeats"]
    env = ctx["env"]
    log("scale: building the 1,000-task run directory")
    run_dir, fake, recorded = scale.status_run(work, template)
    fake_env = {**env, "PATH": f"{fake}{os.pathsep}{env.get('PATH', '')}"}
    check = measure.run([*hpc_radr(), "status", run_dir, "--json"], env=fake_env, cwd=REPO, capture=True)
    counts = json.loads(check.stdout)["counts"]
    calls = (fake / "calls.log").read_text().splitlines()
    result: dict = {"status_1000": {"recorded": recorded, "counts": counts,
                                    "slurm_calls_per_status": calls}}
    (fake / "calls.log").unlink()
    for name, args in (("status", []), ("status --json", ["--json"])):
        log(f"scale: {name} on {recorded['tasks']} tasks x{repeats}")
        measure.run([*hpc_radr(), "status", run_dir, *args], env=fake_env, cwd=REPO)
        result["status_1000"][name] = measure.repeat([*hpc_radr(), "status", run_dir, *args], repeats,
                                                     env=fake_env, cwd=REPO)
    log("scale: building the 10,000-result run directory")
    run_dir, built = scale.collect_run(work, template)
    result["collect_10000"] = {"built": built}
    for name, command in (
            ("collect (merge only: hpc_radr.collect.collect)",
             [python(), "-c", f"from hpc_radr.collect import collect; collect({str(run_dir)!r})"]),
            ("collect", [*hpc_radr(), "collect", run_dir]),
            (REBUILT, [*hpc_radr(), "collect", run_dir])):
        log(f"scale: {name} on {built['result_files']} results x{repeats}")
        measure.run(command, env=env, cwd=REPO)
        result["collect_10000"][name] = measure.repeat(
            command, repeats, before=_stale_report(run_dir) if name == REBUILT else None, env=env, cwd=REPO)
    parts = measure.run([python(), "-m", "benchmarks.collect_parts", run_dir], env=env, cwd=REPO, capture=True)
    result["collect_10000"]["breakdown (one process)"] = json.loads(parts.stdout.strip().splitlines()[-1])
    return result


def section_memory(ctx: dict) -> dict:
    from hpc_radr.submission import prepare

    env = ctx["env"]
    result: dict = {}
    project = ctx["work"] / "project"
    if (project / "manifest.json").exists():
        for threads in (1, 2):
            log(f"memory: one training task, {threads} TensorFlow thread(s)")
            done = measure.run([*hpc_radr(), "run-task", project, "--run", 0, "--force", "--threads", threads],
                               env=env, cwd=REPO, capture=True, memory=True)
            result[f"training task, {threads} thread(s)"] = done.as_dict()
        log("memory: one training task with 4 runs")
        done = measure.run([*hpc_radr(), "run-task", project, "--run", 0, "--run", 1, "--run", 2, "--run", 3,
                            "--force", "--threads", 2], env=env, cwd=REPO, capture=True, memory=True)
        result["training task, 4 runs, 2 threads"] = done.as_dict()
    log(f"memory: one training task on {LARGE_SAMPLES:,} synthetic embeddings (linear upsampling to ratio 1.0)")
    large, position = large_training_run(ctx["work"] / "memory-large", ctx["data"])
    done = measure.run([*hpc_radr(), "run-task", large, "--run", position, "--force", "--threads", 2],
                       env=env, cwd=REPO, capture=True, memory=True)
    record = json.loads(next((large / "results").glob("*.json")).read_text())
    result[f"training task, {LARGE_SAMPLES:,} embeddings, 2 threads"] = {
        **done.as_dict(), "samples_fit": record["sample_counts"]["fit_after_upsampling"],
        "epochs": record["epochs_run"]}
    fresh = ctx["work"] / "memory-embed"
    manifest = prepare(SWEEP, fresh, ctx["data"], None, dedupe=True, overrides={"epochs": ctx["epochs"]},
                       write=True)
    # the largest unit's clips: the first unit of the manifest, whose clips open the sweep's clip list
    unit = next(iter(manifest.units))
    clips = len(manifest.units[unit].positives) + len(manifest.units[unit].negatives)
    for cpus in (2, 4):
        shutil.rmtree(manifest.run_dir.clips, ignore_errors=True)
        log(f"memory: extraction task of {clips} clips ('{unit}') with {cpus} CPUs")
        done = measure.run([*hpc_radr(), "run-task", fresh, "--first-clip", 0, "--clip-count", clips],
                           env={**env, "SLURM_CPUS_PER_TASK": str(cpus)}, cwd=REPO, capture=True, memory=True)
        result[f"extraction task, {cpus} workers ({unit})"] = done.as_dict()
    return result


def tenfold_data(ctx: dict) -> Path:
    """Demo data with 10x every clip count (made once per benchmark run, shared by the sections needing it)."""
    from hpc_radr.demo_data import DemoSize, generate

    if "data_10x" not in ctx:
        size = ctx["size"]
        tenfold = DemoSize(per_tier=size.per_tier * 10, negatives=size.negatives * 10,
                           test_per_tier=size.test_per_tier * 10, test_negatives=size.test_negatives * 10)
        log(f"generating data 10x the demo's ({tenfold}) in {ctx['work'] / 'data-10x'}")
        ctx["data_10x"] = generate(ctx["work"] / "data-10x", tenfold)
    return ctx["data_10x"]


def section_estimate(ctx: dict) -> dict:
    from benchmarks import estimate

    data = tenfold_data(ctx)
    return estimate.run({**ctx, "repo": REPO, "hpc_radr": hpc_radr(), "log": log}, SWEEP, ctx["data"], data)


def section_data_scale(ctx: dict) -> dict:
    from benchmarks import data_scale

    data = tenfold_data(ctx)
    found = data_scale.run({**ctx, "repo": REPO, "hpc_radr": hpc_radr(), "sweep": SWEEP}, ctx["data"], data, log)
    # kept beside the scratch run directories, in case rendering the report fails after the long measurement
    (ctx["work"] / "data-scale.json").write_text(json.dumps(found, indent=2, default=str))
    return found


def section_upsampling(ctx: dict) -> dict:
    out, progress = ctx["work"] / "upsampling.json", ctx["work"] / "upsampling.log"
    log(f"upsampling: BirdNET's own against hpc-radr's, every mode, 3 sizes (minutes: BirdNET's smote); {progress}")
    done = measure.run([python(), "-m", "benchmarks.upsampling", out], env=ctx["env"], cwd=REPO, log=progress)
    return {**json.loads(out.read_text()), "measured": done.as_dict()}


LARGE_SAMPLES = 15_000  # a large real dataset (BirdNET's per-epoch cost was measured at 3,000 and 15,000)


def large_training_run(folder: Path, data: Path) -> tuple[Path, int]:
    """A run directory whose caches hold random embeddings, 15,000 for training (10% positives) and 2,000 for
    testing, and the position of a 'linear, ratio 1.0' run on it: the memory of training on a large dataset."""
    import numpy as np

    from hpc_radr import embedding_cache
    from hpc_radr.submission import prepare

    manifest = prepare(SWEEP, folder, data, None, dedupe=True, overrides={"epochs": 2}, write=True)
    rng = np.random.default_rng(0)
    for unit, n in (("high_medium_low", LARGE_SAMPLES), ("test", 2_000)):
        y = (rng.random((n, 1)) < 0.1).astype("float32")
        x = (rng.standard_normal((n, 1024)) + y).astype("float32")
        embedding_cache.save(manifest.run_dir.cache_file(manifest.units[unit].key),
                             embedding_cache.Embeddings(x, y, ["RADR"]), manifest.units[unit].key)
    position = next(k for k, c in enumerate(manifest.runs) if c.dataset == "high_medium_low"
                    and c.upsampling_mode == "linear" and c.upsampling_ratio == 1.0 and not c.focal_loss)
    return folder, position


# --------------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smaller demo data (8 per tier, 60 negatives), 5 epochs, a naive sample of 6")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hpc-radr-bench"),
                        help="scratch folder, emptied first [default: %(default)s]")
    parser.add_argument("--epochs", type=int, help="training epochs [default: 20, the demo profile; quick: 5]")
    parser.add_argument("--workers", type=int, default=2, help="worker processes / naive slots [default: 2]")
    parser.add_argument("--naive-sample", type=int, metavar="K",
                        help="run a seeded random sample of K naive configurations and extrapolate to 108 "
                             "[default: all 108; quick: 6]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the naive sample [default: 0]")
    parser.add_argument("--repeats", type=int, default=7, help="runs per CLI timing (median) [default: 7]")
    parser.add_argument("--scale-repeats", type=int, help="runs per scale timing [default: 7; quick: 3]")
    parser.add_argument("--overhead-runs", type=int, default=4, help="N for the N-runs-per-process figure")
    parser.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                        help=f"comma-separated subset of {', '.join(SECTIONS)} [default: all but data-scale]")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.naive_sample is not None and not 1 <= args.naive_sample <= CONFIGURATIONS:
        parser.error(f"--naive-sample must lie in 1..{CONFIGURATIONS}")
    if args.repeats < 7:
        parser.error("--repeats must be at least 7 (medians of fewer runs are too noisy)")

    started = time.perf_counter()
    command = [Path(sys.executable).name, "-m", "benchmarks.run", *(argv if argv is not None else sys.argv[1:])]
    about = machine.describe(command)
    work = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    size = demo_size(args.quick)
    ctx = {
        "work": work, "env": environment(), "workers": args.workers, "seed": args.seed,
        "epochs": args.epochs or (5 if args.quick else 20),
        "naive_sample": args.naive_sample or (6 if args.quick else None),
        "repeats": args.repeats, "scale_repeats": args.scale_repeats or (3 if args.quick else 7),
        "overhead_runs": args.overhead_runs, "size": size,
    }
    from hpc_radr.demo_data import generate

    if NEED_DEMO_DATA & set(sections):
        log(f"generating the synthetic demo data ({size}) in {work / 'data'}")
        ctx["data"] = generate(work / "data", size)
    results: dict = {"machine": about, "quick": args.quick, "demo_size": size.__dict__, "epochs": ctx["epochs"],
                     "numba_cache_dir": ctx["env"]["NUMBA_CACHE_DIR"], "sections": {}, "section_seconds": {}}
    for name in SECTIONS:
        if name not in sections:
            continue
        began = time.perf_counter()
        if name == "sweep":
            found = section_sweep(ctx)
        elif name == "naive":
            found = section_naive(ctx)
        elif name == "overhead":
            found = section_overhead(ctx, results["sections"].get("sweep"))
        elif name == "cli":
            found = section_cli(ctx)
        elif name == "scale":
            found = section_scale(ctx)
        elif name == "memory":
            found = section_memory(ctx)
        elif name == "estimate":
            found = section_estimate(ctx)
        elif name == "data-scale":
            found = section_data_scale(ctx)
        else:
            found = section_upsampling(ctx)
        results["sections"][name] = found
        results["section_seconds"][name] = time.perf_counter() - began
    results["total_seconds"] = time.perf_counter() - started
    json_path, md_path = write_report(results, args.out)
    log(f"done in {results['total_seconds'] / 60:.1f} min: {json_path}, {md_path}")


if __name__ == "__main__":
    main()
