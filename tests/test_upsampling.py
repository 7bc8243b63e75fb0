"""hpc_radr.birdnet.upsampling against BirdNET 2.4's own ``model.upsampling``: the same arrays and the same random
draws, bit for bit, on random data, tied and duplicated data, the no-op case and real BirdNET embeddings; and a
real smote training that gives the same result with either implementation.

BirdNET's function runs in one subprocess per data family (importing it imports TensorFlow, and blanks
CUDA_VISIBLE_DEVICES in the importing process); the fast one runs here, TensorFlow-free."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import write_sweep

from hpc_radr.birdnet.neighbours import birdnet_neighbours, nearest_neighbours
from hpc_radr.birdnet.upsampling import MODES, UpsamplingStats, upsampling
from hpc_radr.embedding_cache import load as load_cache
from hpc_radr.manifest import load
from hpc_radr.results import read_result
from hpc_radr.run_dir import RunDir

RATIOS = (0.25, 0.5, 1.0)

# Runs BirdNET's own upsampling on every case; records its output and the final state of every numpy generator
# it created (BirdNET seeds a fresh np.random.default_rng(cfg.RANDOM_SEED) in upsampling and in upsample_core).
REFERENCE = """
import json, sys
import numpy as np
import birdnet_analyzer.config as cfg
from birdnet_analyzer import model

data, cases, out = np.load(sys.argv[1]), json.loads(open(sys.argv[2]).read()), sys.argv[3]
cfg.BINARY_CLASSIFICATION = True
made, real = [], np.random.default_rng
np.random.default_rng = lambda *args, **kwargs: made.append(real(*args, **kwargs)) or made[-1]
arrays, states = {}, {}
for case in cases:
    made.clear()
    cfg.RANDOM_SEED = case["seed"]
    global_before = repr(np.random.get_state())
    x, y = model.upsampling(data[case["data"] + "_x"], data[case["data"] + "_y"], case["ratio"], case["mode"])
    arrays[case["id"] + "_x"], arrays[case["id"] + "_y"] = x, y
    states[case["id"]] = {"generators": [g.bit_generator.state for g in made],
                          "global_unchanged": repr(np.random.get_state()) == global_before}
np.savez(out + ".npz", **arrays)
open(out + ".json", "w").write(json.dumps(states))
"""


def labelled(n: int, positives: int, dim: int, seed: int, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Random float32 embeddings whose classes overlap, with ``positives`` of ``n`` labelled 1."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, 1), dtype=np.float32)
    y[rng.choice(n, positives, replace=False)] = 1
    return (rng.standard_normal((n, dim)) + shift * y).astype(np.float32), y


def with_twins(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every second positive twice: anchors with a twin at distance 0, so BirdNET's neighbour order is a tie."""
    twins = np.flatnonzero(y[:, 0] == 1)[::2]
    return np.concatenate([x, x[twins]]), np.concatenate([y, y[twins]])


def tied() -> tuple[np.ndarray, np.ndarray]:
    """Integer-valued embeddings in 4 dimensions: exactly tied distances everywhere."""
    rng = np.random.default_rng(11)
    y = (rng.random((300, 1)) < 0.15).astype(np.float32)
    return np.clip(np.round(rng.standard_normal((300, 4)) + y), -2, 3).astype(np.float32), y


def neighbourhoods(n: int, positives: int, centres: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings as the 100x benchmark draws them: points scattered tightly around a few hundred centres (each
    with its own near neighbours, far from the rest), a non-zero common mean, a few exact duplicate rows, and a
    few points alone far from every centre (no neighbourhood: they take the matrix-product path)."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, 1024)) + 3.0
    x = middle[rng.integers(0, centres, n)] + 0.05 * rng.standard_normal((n, 1024))
    x[-20:] = rng.standard_normal((20, 1024)) * 4 + 3.0  # alone
    x[-40:-30] = x[:10]  # duplicates of the first ten
    y = np.zeros((n, 1), dtype=np.float32)
    y[rng.choice(n, positives, replace=False)] = 1
    y[:10] = y[-40:-30] = 1  # the duplicated rows are anchors
    y[-20:] = 1
    return x.astype(np.float32), y


def synthetic_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    small, mid = labelled(60, 8, 16, 1), labelled(2_000, 200, 64, 2)
    no_op = labelled(31, 11, 16, 3)  # ratio 0.5: int(20 x 0.5) = 10 <= 11 positives, nothing to add
    majority = labelled(42, 30, 16, 4)  # more positives than negatives: BirdNET upsamples the negatives
    tiny = labelled(5, 2, 8, 5)  # fewer samples than BirdNET's 5 neighbours + the anchor
    in_float64 = labelled(300, 40, 16, 6)
    return {"small": small, "mid": mid, "wide": labelled(2_200, 200, 1024, 7), "tied": tied(),
            "neighbourhoods": neighbourhoods(3_000, 400, 150, 12),
            "twins": with_twins(*labelled(300, 40, 16, 8)), "no_op": no_op,
            "majority": majority, "tiny": tiny, "float64": (in_float64[0].astype(np.float64), in_float64[1])}


def synthetic_cases() -> list[dict]:
    cases = [dict(data="small", mode=m, ratio=r, seed=s) for m in MODES for r in RATIOS for s in (1, 7, 42)]
    cases += [dict(data="mid", mode=m, ratio=r, seed=s) for m in MODES for r in RATIOS for s in (1, 42)]
    cases += [dict(data="wide", mode=m, ratio=0.25, seed=3) for m in MODES]
    cases += [dict(data="neighbourhoods", mode=m, ratio=0.25, seed=s) for m in MODES for s in (1, 2)]
    cases += [dict(data=d, mode=m, ratio=r, seed=s) for d in ("tied", "twins") for m in MODES for r in (0.5, 1.0)
              for s in (1, 2)]
    for data, ratio in (("no_op", 0.5), ("majority", 1.0), ("tiny", 1.0), ("float64", 1.0)):
        cases += [dict(data=data, mode=m, ratio=ratio, seed=s) for m in MODES for s in (1, 2)]
    return [dict(case, id=f"{case['data']}-{case['mode']}-{case['ratio']:g}-seed{case['seed']}") for case in cases]


def real_cases() -> list[dict]:
    cases = [dict(data="real", mode=m, ratio=r, seed=s) for m in MODES for r in (0.5, 1.0) for s in (1, 2)]
    cases += [dict(data="real_doubled", mode=m, ratio=1.0, seed=s) for m in MODES for s in (1, 2)]
    return [dict(case, id=f"{case['data']}-{case['mode']}-{case['ratio']:g}-seed{case['seed']}") for case in cases]


SYNTHETIC = synthetic_cases()
REAL = real_cases()


def birdnet_reference(folder: Path, data: dict, cases: list[dict]) -> tuple[dict, dict, dict]:
    """BirdNET's outputs (by case id), the generator states it left, and the inputs."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {f"{name}_{part}": a for name, (x, y) in data.items() for part, a in (("x", x), ("y", y))}
    np.savez(folder / "data.npz", **arrays)
    (folder / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run([sys.executable, "-c", REFERENCE, str(folder / "data.npz"), str(folder / "cases.json"),
                           str(folder / "birdnet")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(folder / "birdnet.npz") as found:
        outputs = {key: found[key] for key in found.files}
    return outputs, json.loads((folder / "birdnet.json").read_text()), data


@pytest.fixture(scope="module")
def synthetic_reference(tmp_path_factory):
    return birdnet_reference(tmp_path_factory.mktemp("upsampling"), synthetic_data(), SYNTHETIC)


def real_embeddings(trained_run: Path) -> tuple[np.ndarray, np.ndarray]:
    """The BirdNET V2.4 embeddings of the small demo dataset's training clips, from the trained run's cache."""
    manifest = load(RunDir(trained_run))
    unit = manifest.units["high_medium_low"]
    found = load_cache(manifest.run_dir.cache_file(unit.key), unit.key)
    assert found.x.dtype == np.float32 and found.x.shape[1] == 1024 and 0 < found.n_positive < found.n_negative
    return found.x, found.y


@pytest.fixture(scope="module")
def real_reference(trained_run, tmp_path_factory):
    x, y = real_embeddings(trained_run)
    data = {"real": (x, y), "real_doubled": (np.concatenate([x, x]), np.concatenate([y, y]))}
    return birdnet_reference(tmp_path_factory.mktemp("upsampling-real"), data, REAL)


@contextmanager
def recorded_generators() -> Iterator[list[np.random.Generator]]:
    """Every generator np.random.default_rng creates meanwhile, in order."""
    made: list[np.random.Generator] = []
    real = np.random.default_rng

    def recording(*args, **kwargs) -> np.random.Generator:
        made.append(real(*args, **kwargs))
        return made[-1]

    np.random.default_rng = recording
    try:
        yield made
    finally:
        np.random.default_rng = real


def fast(data: dict, case: dict) -> tuple[np.ndarray, np.ndarray, list[dict], bool, UpsamplingStats]:
    x, y = data[case["data"]]
    stats = UpsamplingStats()
    global_before = repr(np.random.get_state())
    with recorded_generators() as made:
        x_up, y_up = upsampling(x, y, case["ratio"], case["mode"], seed=case["seed"], stats=stats)
    return x_up, y_up, [g.bit_generator.state for g in made], repr(np.random.get_state()) == global_before, stats


def assert_same_as_birdnet(reference: tuple[dict, dict, dict], case: dict) -> UpsamplingStats:
    outputs, states, data = reference
    x, y, generators, global_unchanged, stats = fast(data, case)
    expected_x, expected_y = outputs[case["id"] + "_x"], outputs[case["id"] + "_y"]
    assert x.dtype == expected_x.dtype and y.dtype == expected_y.dtype
    assert np.array_equal(x, expected_x) and np.array_equal(y, expected_y)
    assert generators == states[case["id"]]["generators"] and len(generators) == 2
    assert global_unchanged and states[case["id"]]["global_unchanged"]
    assert stats.synthetic == len(expected_y) - len(data[case["data"]][1])
    return stats


@pytest.mark.parametrize("case", SYNTHETIC, ids=[c["id"] for c in SYNTHETIC])
def test_the_same_arrays_and_random_draws_as_birdnet(synthetic_reference, case):
    stats = assert_same_as_birdnet(synthetic_reference, case)
    if case["mode"] == "smote" and case["data"] in ("small", "mid", "wide", "float64"):
        assert stats.anchors > 0 and stats.fallback_anchors == 0, "continuous data must take the fast path"


@pytest.mark.training
@pytest.mark.parametrize("case", REAL, ids=[c["id"] for c in REAL])
def test_the_same_arrays_on_real_birdnet_embeddings(real_reference, case):
    stats = assert_same_as_birdnet(real_reference, case)
    if case["mode"] == "smote" and stats.synthetic:  # ratio 0.5 adds nothing to 18 positives and 30 negatives
        # every row doubled: each anchor's twin ties with it at distance 0
        assert stats.anchors > 0 and stats.fallback_anchors == (stats.anchors if "doubled" in case["id"] else 0)


def test_ties_fall_back_to_birdnets_full_sort_and_are_counted(synthetic_reference):
    _, _, data = synthetic_reference
    for name in ("tied", "twins"):
        for case in [c for c in SYNTHETIC if c["data"] == name and c["mode"] == "smote"]:
            stats = fast(data, case)[4]
            assert 0 < stats.fallback_anchors <= min(stats.anchors, stats.fallback_samples), case["id"]


def test_the_no_op_case_only_shuffles(synthetic_reference):
    _, _, data = synthetic_reference
    x, y = data["no_op"]
    for mode in MODES:
        x_up, y_up, _, _, stats = fast(data, dict(data="no_op", mode=mode, ratio=0.5, seed=1))
        assert stats.synthetic == 0 and x_up.shape == x.shape and not np.array_equal(x_up, x)
        order = np.lexsort(x_up.T)
        assert np.array_equal(x_up[order], x[np.lexsort(x.T)]) and y_up.sum() == y.sum()


def tie_at_the_neighbours(x: np.ndarray, anchor: int) -> bool:
    """Whether a value at BirdNET's sorted positions 1..5 occurs more than once: any sort may order them."""
    ranked = np.sort(np.sqrt(np.sum((x - x[anchor]) ** 2, axis=1)))[:7]
    return not np.all(ranked[1:] > ranked[:-1])


@pytest.mark.parametrize("name", ["mid", "tied", "twins", "float64", "neighbourhoods"])
def test_every_anchors_neighbours_are_birdnets(synthetic_reference, name):
    """Not only the anchors the random draws pick: every sample as an anchor, against BirdNET's formula; exactly
    the anchors with a tie at the neighbour positions (found on the whole array) take BirdNET's full sort."""
    x = synthetic_reference[2][name][0]
    found, fell_back = nearest_neighbours(x, list(range(len(x))))
    for anchor, neighbours in found.items():
        assert np.array_equal(neighbours, birdnet_neighbours(x, anchor)), anchor
    assert fell_back == {a for a in range(len(x)) if tie_at_the_neighbours(x, a)}
    assert (len(fell_back) > 0) == (name in ("tied", "twins", "neighbourhoods"))
    if name in ("tied", "twins"):  # the ties matter: a stable sort would pick other neighbours for some anchors
        stable = [np.argsort(np.sqrt(np.sum((x - x[a]) ** 2, axis=1)), kind="stable")[1:6] for a in fell_back]
        assert any(not np.array_equal(s, found[a]) for s, a in zip(stable, fell_back, strict=True))


def test_on_data_with_neighbourhoods_few_samples_get_birdnets_formula(synthetic_reference, monkeypatch):
    """The point of the projection and its tree: an anchor with near neighbours gets BirdNET's formula on a
    handful of samples, not on all 3,000; the points far from everything take the matrix-product path."""
    from hpc_radr.birdnet import neighbours

    x, y = synthetic_reference[2]["neighbourhoods"]
    bounds = neighbours._Bounds.of(x)
    projection = neighbours._Projection.of(bounds)
    positives = np.flatnonzero(y[:, 0] == 1)
    dense, matrix_products = [], neighbours._Bounds.dense_candidates
    monkeypatch.setattr(neighbours._Bounds, "dense_candidates",
                        lambda self, rows, *args: dense.extend(rows.tolist()) or matrix_products(self, rows, *args))
    anchor_of, sample_of, distance = projection.candidates(x, bounds, positives, neighbours.NEIGHBOURS + 1)
    per_anchor = np.bincount(anchor_of, minlength=len(x))[positives]
    assert np.median(per_anchor) <= 30 and per_anchor.min() >= neighbours.NEIGHBOURS + 1
    assert len(anchor_of) < 0.05 * len(positives) * len(x)
    pairs = anchor_of.astype(np.int64) * len(x) + sample_of
    assert len(np.unique(pairs)) == len(pairs), "a pair twice would look like a tie"
    assert np.array_equal(distance, np.sqrt(np.sum((x[sample_of] - x[anchor_of]) ** 2, axis=1)))
    assert set(positives[-20:].tolist()) <= set(dense) and len(dense) < 0.1 * len(positives)


def test_neighbours_that_float32_rounding_reorders_are_birdnets():
    """Samples at nearly the same distance from the anchor (tiny coordinates beside one large one): BirdNET's
    float32 distances pick another set of 5 nearest than the exact distances do, without a tie, so the matrix
    products alone would miss one: only their error bounds find BirdNET's neighbours. (A seed that does this.)"""
    rng = np.random.default_rng(204)
    offsets = rng.standard_normal((12, 1024)) * 9e-5 * rng.random((12, 1))
    offsets[:, 0] = 1 + 3.6e-7 * rng.permutation(12)
    x = np.vstack([np.zeros(1024), offsets]).astype(np.float32)
    wide = x.astype(np.float64)
    assert set(np.argsort(np.sum((wide - wide[0]) ** 2, axis=1))[1:6]) != set(birdnet_neighbours(x, 0))
    found, fell_back = nearest_neighbours(x, [0])
    assert np.array_equal(found[0], birdnet_neighbours(x, 0)) and not fell_back


@pytest.mark.parametrize("scale", [1e-21, 1e-3, 1e16])
def test_the_fast_path_is_exact_at_every_scale(scale):
    """Squares that underflow to subnormals (1e-21) up to near the overflow guard (1e16 in 64 dimensions)."""
    x = (labelled(300, 40, 64, 13)[0].astype(np.float64) * scale).astype(np.float32)
    found, fell_back = nearest_neighbours(x, list(range(len(x))))
    assert not fell_back and all(np.array_equal(found[a], birdnet_neighbours(x, a)) for a in found)


def test_data_outside_the_proven_range_takes_birdnets_computation():
    x, _ = labelled(40, 5, 8, 9)
    infinite = x.copy()
    infinite[7, 3] = np.inf
    for unsafe in (x.astype(np.float16), np.asfortranarray(x), infinite):
        found, fell_back = nearest_neighbours(unsafe, [0, 1, 2])
        assert fell_back == {0, 1, 2}
        assert all(np.array_equal(found[a], birdnet_neighbours(unsafe, a)) for a in (0, 1, 2))


def test_unknown_modes_and_multiclass_labels_are_refused():
    x, y = labelled(20, 4, 8, 10)
    with pytest.raises(ValueError, match="unknown upsampling mode"):
        upsampling(x, y, 1.0, "cubic", seed=1)
    with pytest.raises(ValueError, match="binary labels"):
        upsampling(x, np.hstack([y, 1 - y]), 1.0, "smote", seed=1)


@pytest.mark.training
def test_a_smote_training_gives_the_same_result_with_birdnets_own_upsampling(trained_run, small_data, tmp_path):
    """The trained run used the fast implementation (the default); its smote ratio-1.0 runs trained again with
    upsampling_implementation = "birdnet", in a run directory that shares its embedding caches."""
    from hpc_radr.executors.local import run_local
    from hpc_radr.submission import prepare, remaining

    sweep = write_sweep(tmp_path, name="birdnet_upsampling", modes='["smote"]', ratios="[1.0]", seeds="[1]",
                        extra='upsampling_implementation = "birdnet"\n')
    manifest = prepare(sweep, tmp_path / "run", small_data, None, dedupe=True, overrides={}, write=True)
    manifest.run_dir.cache.mkdir(parents=True, exist_ok=True)
    for cache in (trained_run / "cache").glob("*.npz"):
        shutil.copy(cache, manifest.run_dir.cache / cache.name)
    assert not run_local(remaining(manifest), workers=1).failed
    trained = load(RunDir(trained_run)).run_dir
    for config in manifest.runs:
        own = read_result(manifest.run_dir, config.run_id).record
        fast_record = read_result(trained, config.run_id).record
        assert own["training"]["upsampling_implementation"] == "birdnet"
        assert (fast_record["upsampling"]["implementation"], own["upsampling"]["implementation"]) == ("fast", "birdnet")
        assert fast_record["upsampling"]["anchors"] > 0 and fast_record["upsampling"]["synthetic"] > 0
        assert own["upsampling"]["synthetic"] == fast_record["upsampling"]["synthetic"]
        assert own["timings"]["upsample_s"] > 0 and fast_record["timings"]["upsample_s"] > 0
        for part in ("test", "validation_at_best_epoch", "history", "sample_counts", "epochs_run", "best_epoch"):
            assert own[part] == fast_record[part], part
