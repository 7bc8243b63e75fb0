"""The cost estimate against the cost: `hpc-radr plan --estimate` (calibrated by its probe), then the sweep it
priced (`hpc-radr submit --executor local`), on the demo data and on data 10x its size; and the 10x sweep
priced again from the demo's run directory (`--calibrate-from`), a calibration from a smaller, earlier sweep.

``benchmarks.run --sections estimate`` runs it. The 10x sweep has one seed (28 runs instead of 84) to keep the
benchmark near a quarter of an hour on 2 cores: the estimate prices whatever sweep it is given.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmarks import measure

TOLERANCE = 0.30  # the bound: within 30 % of the measured CPU-hours and wall time


def one_seed_sweep(study: Path, folder: Path) -> Path:
    """The study's sweep file with its seeds cut to the first."""
    text = re.sub(r"(?m)^seeds = \[.*\]$", "seeds = [1]", study.read_text())
    path = folder / "one_seed.toml"
    path.write_text(text)
    return path


def _estimate(command: list, ctx: dict) -> tuple[dict, measure.Measured]:
    done = measure.run(command, env=ctx["env"], cwd=ctx["repo"], capture=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({done.returncode})")
    return json.loads(done.stdout), done


def case(name: str, sweep: Path, data: Path, run_dir: Path, ctx: dict, calibrate_from: Path | None = None) -> dict:
    """Estimate (probe, and from ``calibrate_from`` if given), then run the sweep and compare."""
    common = ["--data", data, "--executor", "local", "--workers", ctx["workers"], "--epochs", ctx["epochs"]]
    ctx["log"](f"estimate/{name}: plan --estimate (probe)")
    probed, probe_cost = _estimate([*ctx["hpc_radr"], "plan", sweep, "--estimate", *common, "--json"], ctx)
    estimates = {"probe": probed}
    if calibrate_from is not None:
        ctx["log"](f"estimate/{name}: plan --estimate --calibrate-from {calibrate_from}")
        estimates["earlier run directory"], _ = _estimate(
            [*ctx["hpc_radr"], "plan", sweep, "--calibrate-from", calibrate_from, *common, "--json"], ctx)
    ctx["log"](f"estimate/{name}: the sweep itself (submit --executor local)")
    done = measure.run([*ctx["hpc_radr"], "submit", sweep, "--run-dir", run_dir, *common, "--json"],
                       env=ctx["env"], cwd=ctx["repo"], capture=True)
    outcome = json.loads(done.stdout)
    if outcome["failed"]:
        raise RuntimeError(f"estimate/{name}: runs failed: {outcome['failed']}")
    compared, actual = {}, _actual(run_dir)
    for source, found in estimates.items():
        cpu, wall = found["cpu_hours"] * 3600, found["wall_hours"] * 3600
        compared[source] = {
            "cpu_s": cpu, "wall_s": wall, "uncertainty": found["uncertainty"],
            "cpu_error": cpu / done.cpu_s - 1, "wall_error": wall / done.wall_s - 1,
            "within": abs(cpu / done.cpu_s - 1) <= TOLERANCE and abs(wall / done.wall_s - 1) <= TOLERANCE,
            "per_kind": found["kinds"], "calibration": found["calibration"]["described"]}
    return {"sweep": str(sweep), "data": str(data), "runs": len(outcome["trained"]),
            "clips": probed["clips"], "measured": done.as_dict(), "probe_cost": probe_cost.as_dict(),
            "actual": actual, "estimates": compared}


def _actual(run_dir: Path) -> dict:
    """What the run directory recorded per job kind (CPU-seconds, and the extraction's terms as the run-dir
    calibration reads them), so that a miss can be traced to extraction or to training."""
    from hpc_radr.estimate import actual_cost, calibrate_from_run_dir
    from hpc_radr.manifest import load
    from hpc_radr.run_dir import RunDir

    manifest = load(RunDir(run_dir))
    cost, calibration = actual_cost(manifest), calibrate_from_run_dir(manifest)
    return {"cpu_s": {kind: hours * 3600 for kind, hours in cost["cpu_hours"].items()},
            "clip_cpu_s": calibration.clip_cpu_s, "worker_start_cpu_s": calibration.worker_start_cpu_s,
            "extraction_efficiency": calibration.extraction_efficiency, "import_s": calibration.import_s}


def run(ctx: dict, study: Path, demo: Path, tenfold: Path) -> dict:
    work = ctx["work"]
    small = case("demo", study, demo, work / "estimate-1x", ctx)
    large = case("10x", one_seed_sweep(study, work), tenfold, work / "estimate-10x", ctx,
                 calibrate_from=work / "estimate-1x")
    return {"tolerance": TOLERANCE, "epochs": ctx["epochs"], "workers": ctx["workers"],
            "cases": {"demo (1x), 84 runs": small, "10x the demo, one seed (28 runs)": large}}
