"""The shape of the package, as README's "Development" section draws it: layers whose modules import only from
their own or earlier layers (lazy imports inside functions count too), no two modules importing each other,
and light readers that stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hpc_radr"

CLI = " ".join(f"cli.{p.stem}" for p in sorted((PACKAGE / "cli").glob("*.py")) if p.stem != "__init__")
# Bottom first, as names below hpc_radr ("." is the package itself). A module may import modules of its own
# layer or of an earlier one.
LAYERS = [[f"hpc_radr.{name}" if name != "." else "hpc_radr" for name in layer.split()] for layer in (
    ". errors atomic locks storage run_dir results operating_points sweep birdnet birdnet.model_files latest manifest "
    "submission_log classifier",
    "executors executors.slurm_state executors.job_files status collect estimate report report.bootstrap "
    "report.multiplicity "
    "report.analysis report.figures report.render selection model_card export",
    "demo_data datasets embedding_cache clip_store birdnet.runtime birdnet.embeddings birdnet.neighbours "
    "birdnet.upsampling "
    "birdnet.training "
    "planning submission runner audio_inputs birdnet.analysis birdnet.probe",
    "bundled job_plan executors.slurm_site executors.local executors.slurm executors.sbatch_scripts workflow",
    f"cli __main__ {CLI}",
)]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (``from a import b``: a.b if a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in known else base)
    return {module for module in found if module in known and module != name}


def test_every_module_has_a_layer():
    placed = [module for layer in LAYERS for module in layer]
    assert sorted(placed) == sorted(modules()), "add new modules to LAYERS (and to README's picture)"
    assert len(placed) == len(set(placed))


def test_imports_point_down_the_layers_and_never_both_ways():
    known = modules()
    layer_of = {module: k for k, layer in enumerate(LAYERS) for module in layer}
    graph = {name: imports(name, path, known) for name, path in known.items()}
    upward = [f"{name} -> {target}" for name, targets in graph.items() for target in targets
              if layer_of[target] > layer_of[name]]
    assert not upward, "imports from a later layer: " + "; ".join(sorted(upward))
    both_ways = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph[b]})
    assert not both_ways


def test_reading_results_and_status_stays_light():
    probe = ("import sys, hpc_radr.results, hpc_radr.status, hpc_radr.collect;"
             "print(' '.join(sorted(m for m in sys.modules if m.startswith(('hpc_radr', 'tensorflow')))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in loaded if m.startswith(("hpc_radr.datasets", "hpc_radr.birdnet", "tensorflow",
                                                   "hpc_radr.planning", "hpc_radr.runner"))], loaded
    only_results = subprocess.run([sys.executable, "-c", "import sys, hpc_radr.results; print(' '.join(sys.modules))"],
                                  capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in only_results if m.startswith(("hpc_radr.datasets", "hpc_radr.birdnet", "hpc_radr.manifest"))]
