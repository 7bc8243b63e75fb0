"""Shared fixtures: small synthetic data, sweep files, and run directories built through the real code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hpc_radr.demo_data import DemoSize, generate

SMALL = DemoSize(per_tier=6, negatives=30, test_per_tier=4, test_negatives=20)

TWO_DATASETS = """
[[datasets]]
name = "high_medium_low"
tiers = ["high", "medium", "low"]

[[datasets]]
name = "high_medium"
tiers = ["high", "medium"]
"""

SWEEP_TEMPLATE = """
name = "{name}"
{datasets}
[grid]
upsampling_modes = {modes}
upsampling_ratios = {ratios}
focal_loss = {focal}
seeds = {seeds}

[training]
epochs = {epochs}
"""


def write_sweep(folder: Path, name: str = "small", modes: str = '["linear", "smote"]', ratios: str = "[0.0, 1.0]",
                focal: str = "[false]", seeds: str = "[1, 2]", epochs: int = 5, extra: str = "",
                datasets: str = TWO_DATASETS) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(SWEEP_TEMPLATE.format(name=name, datasets=datasets, modes=modes, ratios=ratios, focal=focal,
                                          seeds=seeds, epochs=epochs) + extra)
    return path


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A small tiered dataset in the documented layout (synthetic, deterministic)."""
    return generate(tmp_path_factory.mktemp("data") / "source", SMALL)


@pytest.fixture(scope="session", autouse=True)
def _numba_cache(tmp_path_factory) -> None:
    """librosa's JIT costs about 25 s per fresh process without a persistent cache."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(tmp_path_factory.mktemp("numba")))


@pytest.fixture(scope="session")
def trained_run(small_data, tmp_path_factory) -> Path:
    """A small sweep (16 configurations, 12 runs, 5 epochs) trained for real through the local executor,
    all runs of it in one worker process."""
    from hpc_radr.executors.local import run_local
    from hpc_radr.submission import prepare, remaining

    folder = tmp_path_factory.mktemp("trained")
    sweep = write_sweep(folder)
    manifest = prepare(sweep, folder / "run", small_data, None, dedupe=True, overrides={})
    outcome = run_local(remaining(manifest), workers=1)
    assert not outcome.failed, outcome
    return folder / "run"


@pytest.fixture(scope="session")
def slurm_env() -> dict[str, str]:
    """The environment for talking to the project's test cluster (scripts/slurm-cluster start).

    Skipped when no cluster runs here, unless HPC_RADR_REQUIRE_SLURM is set (CI): then it fails."""
    env_file = os.environ.get("HPC_RADR_SLURM_ENV")
    if not env_file or not Path(env_file).is_file():
        reason = "no Slurm test cluster: run the tests through scripts/test (root on Debian) to start one"
        if os.environ.get("HPC_RADR_REQUIRE_SLURM"):
            pytest.fail(reason)
        pytest.skip(reason)
    env = dict(os.environ)
    for line in Path(env_file).read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            env[key] = value.strip().strip("'\"")
    return env
