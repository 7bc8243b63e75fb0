"""hpc-radr installed from its wheel, as labs install tools on a login node, works outside the checkout:
the sbatch templates and the example sweep ship inside the package.

The wheel is built from a copy of the working tree (building in the checkout would leave build/ behind) and
installed into a fresh virtual environment. Its dependencies (TensorFlow alone is 2.8 GB) are not installed
again: the test environment's site-packages is made visible to the new one through a .pth file, so what is
checked is the wheel's own content, and `pip check` confirms that everything it declares is there.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from conftest import write_sweep

REPO = Path(__file__).resolve().parents[1]


def run(command: list, cwd: Path, env: dict | None = None, timeout: int = 600) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done.stdout


def source_copy(target: Path) -> Path:
    files = run(["git", "ls-files", "-co", "--exclude-standard"], REPO).splitlines()
    for name in files:
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("wheel")
    source = source_copy(work / "source")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist",
         source], work)
    wheel = next((work / "dist").glob("hpc_radr-*.whl"))
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).strip())
    (site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([python, "-m", "pip", "install", "--no-deps", "-q", wheel], work)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}:{env['PATH']}"
    outside = work / "elsewhere"
    outside.mkdir()
    return {"python": python, "env": env, "cwd": outside, "site": site, "wheel": wheel}


def test_the_wheel_holds_the_templates_and_the_example_sweep(installed):
    names = run([installed["python"], "-m", "zipfile", "-l", installed["wheel"]], installed["cwd"])
    for name in ("hpc_radr/sbatch_templates/train_array.sbatch", "hpc_radr/sbatch_templates/embed.sbatch",
                 "hpc_radr/sbatch_templates/collect.sbatch", "hpc_radr/jobs/imbalance_regularization.toml"):
        assert name in names
    where = run([installed["python"], "-c", "import hpc_radr; print(hpc_radr.__file__)"], installed["cwd"],
                installed["env"])
    assert where.startswith(str(installed["site"]))  # the installed copy, not the checkout
    missing = run([installed["python"], "-c", REQUIREMENTS_MET], installed["cwd"], installed["env"])
    assert missing.strip() == "[]"


# What the installed wheel declares is installed, at versions it accepts (pip check would also judge the test
# environment's unrelated extras).
REQUIREMENTS_MET = """
from importlib.metadata import PackageNotFoundError, requires, version
from packaging.requirements import Requirement
bad = []
for line in requires("hpc-radr"):
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        found = version(req.name)
    except PackageNotFoundError:
        bad.append(req.name + " missing")
        continue
    if not req.specifier.contains(found, prereleases=True):
        bad.append(f"{req.name} {found} not {req.specifier}")
print(bad)
"""


def test_every_package_the_code_imports_is_declared():
    from importlib.metadata import packages_distributions, requires

    from packaging.requirements import Requirement

    imported = set()
    for path in (REPO / "hpc_radr").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = sorted(imported - set(sys.stdlib_module_names) - {"hpc_radr", "__future__"})
    declared = {Requirement(r).name.lower().replace("_", "-") for r in requires("hpc-radr")}
    owners = packages_distributions()
    undeclared = [module for module in third_party
                  if not {d.lower().replace("_", "-") for d in owners.get(module, [module])} & declared]
    assert third_party and not undeclared


@pytest.mark.training
def test_plan_scripts_and_a_small_local_sweep_run_outside_the_checkout(installed, small_data):
    cwd, env = installed["cwd"], installed["env"]
    listed = run(["hpc-radr", "plan", "--json"], cwd, env)
    assert listed.count('"run_id"') == 108  # the bundled example sweep
    sweep = write_sweep(cwd, name="wheel", modes='["linear"]', ratios="[0.0]", seeds="[1]", epochs=2,
                        datasets='[[datasets]]\nname = "high_medium"\ntiers = ["high", "medium"]\n')
    run(["hpc-radr", "submit", sweep, "--data", small_data, "--run-dir", cwd / "run", "--executor", "local",
         "--workers", "1"], cwd, env)
    assert len(list((cwd / "run" / "results").glob("*.json"))) == 1
    run(["hpc-radr", "collect", cwd / "run"], cwd, env)
    assert (cwd / "run" / "results.csv").is_file()
    run(["hpc-radr", "scripts", cwd / "run", "--out", cwd / "scripts", "--partition", "cpu"], cwd, env)
    for script in (cwd / "scripts").glob("*.sbatch"):
        run(["bash", "-n", script], cwd)
    assert (cwd / "scripts" / "submit-all.sh").is_file()
