"""The sweep definition: a validated TOML file and its expansion into indexed configurations.

Expansion order is fixed, outermost first: dataset, upsampling mode, upsampling ratio, focal loss, seed
(each in the order written in the file). Index ``i`` therefore names the same configuration forever
for a given sweep file, which is what lets a Slurm array index stand for a configuration.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hpc_radr.errors import HpcRadrError

UpsamplingMode = Literal["linear", "mean", "smote", "repeat"]
EvaluationProtocol = Literal["held_out", "birdnet"]
# "fast": hpc_radr.birdnet.upsampling, the same arrays as BirdNET's without its quadratic smote; "birdnet": its own.
UpsamplingImplementation = Literal["fast", "birdnet"]


class SweepError(HpcRadrError, ValueError):
    """A sweep file that cannot be used; the message names the file, the field and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique(values: list, what: str) -> list:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} must not repeat, {value!r} appears twice")
        seen.add(value)
    return values


class DatasetSpec(_Strict):
    """A training dataset: the union of some positive-class quality tiers, plus all negatives."""

    name: str = Field(min_length=1)
    tiers: list[str] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name_is_a_name(cls, value: str) -> str:
        if "/" in value or "\x00" in value or value.strip() != value or value in {".", ".."}:
            raise ValueError("a dataset name must not contain '/' or NUL, nor start or end with spaces")
        return value

    @field_validator("tiers")
    @classmethod
    def _tiers_unique(cls, value: list[str]) -> list[str]:
        return _unique(value, "tiers")


class GridSpec(_Strict):
    """The swept values. Ratios are BirdNET's: the positives are raised to ratio x the negatives."""

    upsampling_modes: list[UpsamplingMode] = Field(min_length=1)
    upsampling_ratios: list[float] = Field(min_length=1)
    focal_loss: list[bool] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)

    @field_validator("upsampling_modes", "focal_loss")
    @classmethod
    def _no_repeats(cls, value: list) -> list:
        return _unique(value, "values")

    @field_validator("upsampling_ratios")
    @classmethod
    def _ratios_in_range(cls, value: list[float]) -> list[float]:
        for ratio in value:
            if not 0.0 <= ratio <= 1.0:
                raise ValueError(f"upsampling ratios must lie in [0, 1], got {ratio}")
        return _unique(value, "upsampling ratios")

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_are_integers(cls, value: object) -> object:
        if isinstance(value, list):
            for seed in value:
                if isinstance(seed, bool) or not isinstance(seed, int):
                    raise ValueError(f"seeds must be integers, got {seed!r}")
                if not 0 <= seed < 2**32:
                    raise ValueError(f"seeds must lie in [0, 2**32), got {seed}")
            _unique(value, "seeds")
        return value


class TrainingSettings(_Strict):
    """Fixed BirdNET training settings (BirdNET-Analyzer 2.4 defaults unless the file says otherwise)."""

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    val_split: float = Field(0.2, gt=0, lt=1)
    hidden_units: int = Field(0, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    focal_loss_gamma: float = Field(2.0, ge=0)
    focal_loss_alpha: float = Field(0.25, gt=0, lt=1)
    crop_mode: Literal["center", "first", "segments", "smart"] = "center"
    overlap: float = Field(0.0, ge=0, lt=3)
    evaluation: EvaluationProtocol = "held_out"
    upsampling_implementation: UpsamplingImplementation = "fast"


class AnalysisSettings(_Strict):
    """How the report judges the remedies (the ``[analysis]`` table; every value has a default).

    Operating points: for each precision target p, the threshold that gives the most recall at precision >= p
    on the validation data, applied to the test set (and for each recall target r, the most precision at
    recall >= r). Intervals: a paired bootstrap over test clips and seeds. Verdicts: significant after
    ``correction`` over every comparison the verdicts use."""

    precision_targets: list[float] = Field([0.9], min_length=1)
    recall_targets: list[float] = Field([0.5], min_length=1)
    # None: enough for the smallest attainable p-value, 2 / (B + 1), to pass the strictest adjusted level
    bootstrap_resamples: int | None = Field(None, ge=200, le=100_000)
    bootstrap_seed: int = Field(0, ge=0)
    correction: Literal["holm", "bh"] = "holm"
    alpha: float = Field(0.05, gt=0, lt=0.5)
    interval_width: float = Field(0.1, gt=0, le=1)  # "seeds needed" for a 95 % t-interval this wide (full width)

    @field_validator("precision_targets", "recall_targets")
    @classmethod
    def _targets_in_range(cls, value: list[float]) -> list[float]:
        for target in value:
            if not 0.0 < target < 1.0:
                raise ValueError(f"targets must lie strictly between 0 and 1, got {target}")
        return _unique(value, "targets")


class DataSpec(_Strict):
    """Where the tiered source data lives; see ``hpc_radr.datasets`` for the layout."""

    source: str | None = None
    positive_class: str = "RADR"
    negative_class: str = "noise"

    @field_validator("negative_class")
    @classmethod
    def _birdnet_non_event(cls, value: str) -> str:
        allowed = ("noise", "other", "background", "silence")
        if value.lower() not in allowed:
            raise ValueError(f"BirdNET recognises only {', '.join(allowed)} as the non-event class")
        return value


class Sweep(_Strict):
    """A whole sweep file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    datasets: list[DatasetSpec] = Field(min_length=1)
    grid: GridSpec
    training: TrainingSettings = TrainingSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    data: DataSpec = DataSpec()

    @field_validator("datasets")
    @classmethod
    def _dataset_names_unique(cls, value: list[DatasetSpec]) -> list[DatasetSpec]:
        _unique([d.name for d in value], "dataset names")
        return value


@dataclass(frozen=True)
class Configuration:
    """One point of the grid. ``run_id`` names the training run that produces its result;
    configurations that are the same experiment (ratio 0.0 in every mode) share one."""

    index: int
    dataset: str
    upsampling_mode: str
    upsampling_ratio: float
    focal_loss: bool
    seed: int
    run_id: str

    def as_dict(self) -> dict:
        return asdict(self)


def slug(name: str) -> str:
    """A file-system-safe stand-in for a user-given name; unique because a hash is added when it differs."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "_"
    if safe == name:
        return name
    return f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def run_id_for(dataset: str, mode: str, ratio: float, focal: bool, seed: int, dedupe: bool) -> str:
    """At ratio 0.0 BirdNET never calls upsampling, so with ``dedupe`` the mode is not part of the run."""
    mode_part = "none" if dedupe and ratio == 0.0 else mode
    return f"{slug(dataset)}__{mode_part}-{ratio:g}__{'focal' if focal else 'bce'}__seed{seed}"


def expand(sweep: Sweep, dedupe: bool = True) -> list[Configuration]:
    """All configurations in the documented order."""
    grid = sweep.grid
    points = itertools.product(
        sweep.datasets, grid.upsampling_modes, grid.upsampling_ratios, grid.focal_loss, grid.seeds
    )
    return [
        Configuration(
            index=i,
            dataset=ds.name,
            upsampling_mode=mode,
            upsampling_ratio=ratio,
            focal_loss=focal,
            seed=seed,
            run_id=run_id_for(ds.name, mode, ratio, focal, seed, dedupe),
        )
        for i, (ds, mode, ratio, focal, seed) in enumerate(points)
    ]


def unique_runs(configurations: list[Configuration]) -> list[Configuration]:
    """The first configuration of each run, in index order: the work that actually has to be done."""
    seen: dict[str, Configuration] = {}
    for config in configurations:
        seen.setdefault(config.run_id, config)
    return list(seen.values())


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    shown = "" if error["type"] in {"missing"} else f" (got {error['input']!r})"
    return f"{location}: {message}{shown}"


def with_analysis(sweep: Sweep, changes: dict) -> Sweep:
    """The sweep with some ``[analysis]`` settings replaced after the fact (``report --precision-target``):
    validated as in a sweep file, and a bad value is one line that names the setting and what is allowed."""
    if not changes:
        return sweep
    try:
        analysis = AnalysisSettings.model_validate(sweep.analysis.model_dump() | changes)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                             for e in err.errors())
        raise SweepError(f"invalid analysis setting: {problems}") from None
    return sweep.model_copy(update={"analysis": analysis})


def parse_sweep(text: str, origin: str) -> Sweep:
    """Validate sweep TOML text; ``origin`` names its file in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SweepError(f"{origin}: not valid TOML: {err}") from None
    try:
        return Sweep.model_validate(raw)
    except ValidationError as err:
        lines = "\n".join(f"  {_describe(e)}" for e in err.errors())
        raise SweepError(f"{origin}: invalid sweep file:\n{lines}") from None


def load_sweep(path: Path) -> tuple[Sweep, str]:
    """Read and validate a sweep file; returns the sweep and its exact text (frozen into manifests)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepError(f"{path}: sweep file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SweepError(f"{path}: cannot read sweep file: {err}") from None
    return parse_sweep(text, str(path)), text
