"""The sweep definition: a validated TOML file and its expansion into indexed configurations.

Expansion order is fixed, outermost first: dataset, upsampling mode, upsampling ratio, focal loss, then each
training setting given as a list under ``[grid]`` in the order of ``TRAINING_AXES`` (whatever the order in the
file), then seed; the values of each axis in the order written in the file. Index ``i`` therefore names the same
configuration forever for a given sweep file, which is what lets a Slurm array index stand for a configuration.
A sweep without training axes expands exactly as before they existed (tests/golden pins the 108-configuration
study).

Configurations that BirdNET trains identically share one run (``run_id``): every mode at ratio 0.0 (BirdNET
never upsamples then), and every focal gamma and alpha while focal loss is off (BirdNET reads them only with it).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from hpc_radr.errors import HpcRadrError

TEST_UNIT = "test"  # the embedding unit of the test set, beside one per dataset
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


# The [training] settings that may be given as a list under [grid], in expansion order (after focal loss,
# before seed). Each value is validated as the [training] field it stands for.
TRAINING_AXES = ("hidden_units", "dropout", "learning_rate", "batch_size", "epochs", "val_split",
                 "focal_loss_gamma", "focal_loss_alpha", "crop_mode", "overlap")
EXTRACTION_AXES = ("crop_mode", "overlap")  # they change the embeddings: one clip store entry per value
FOCAL_ONLY_AXES = ("focal_loss_gamma", "focal_loss_alpha")  # BirdNET 2.4 reads them only with focal loss on
# Short names in run ids: hidden_units 512 -> "hidden512"
AXIS_TAGS = {"hidden_units": "hidden", "dropout": "dropout", "learning_rate": "lr", "batch_size": "batch",
             "epochs": "epochs", "val_split": "val", "focal_loss_gamma": "gamma", "focal_loss_alpha": "alpha",
             "crop_mode": "crop-", "overlap": "overlap"}
# Settings refused as axes, with why (the README's "Sweeping other settings" says the same).
NOT_AXES = {
    "evaluation": "the evaluation protocol decides what every metric means, so a sweep uses one; set it in "
                  "[training]",
    "upsampling_implementation": "both implementations give the same arrays (tests/test_upsampling.py), so it "
                                 "changes the cost, never a result; set it in [training]",
    "mixup": "BirdNET 2.4 applies mixup only to multi-label classifiers: a binary one trains the same with it "
             "on or off",
    "label_smoothing": "BirdNET 2.4 applies label smoothing only to multi-label classifiers: a binary one trains "
                       "the same with it on or off",
}


class GridSpec(_Strict):
    """The swept values. Ratios are BirdNET's: the positives are raised to ratio x the negatives. Any
    ``TRAINING_AXES`` setting may be a list too; a setting given here must not also be set in [training]."""

    upsampling_modes: list[UpsamplingMode] = Field(min_length=1)
    upsampling_ratios: list[float] = Field(min_length=1)
    focal_loss: list[bool] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    hidden_units: list[int] | None = Field(None, min_length=1)
    dropout: list[float] | None = Field(None, min_length=1)
    learning_rate: list[float] | None = Field(None, min_length=1)
    batch_size: list[int] | None = Field(None, min_length=1)
    epochs: list[int] | None = Field(None, min_length=1)
    val_split: list[float] | None = Field(None, min_length=1)
    focal_loss_gamma: list[float] | None = Field(None, min_length=1)
    focal_loss_alpha: list[float] | None = Field(None, min_length=1)
    crop_mode: list[str] | None = Field(None, min_length=1)
    overlap: list[float] | None = Field(None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _only_settings_that_can_vary(cls, raw: object) -> object:
        if isinstance(raw, dict):
            for name in raw:
                if name in NOT_AXES:
                    raise ValueError(f"'{name}' cannot be a sweep axis: {NOT_AXES[name]}")
                if name not in cls.model_fields:
                    raise ValueError(f"'{name}' is not a setting that can be swept; the axes are upsampling_modes, "
                                     f"upsampling_ratios, focal_loss, seeds and {', '.join(TRAINING_AXES)}")
        return raw

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

    @field_validator(*TRAINING_AXES, mode="before")
    @classmethod
    def _values_birdnet_accepts(cls, value: object, info: ValidationInfo) -> object:
        """Each value as the [training] field would take it: the same ranges, the same types."""
        if not isinstance(value, list):
            return value
        checked = []
        for item in value:
            if isinstance(item, bool):
                raise ValueError(f"{item!r} is not a value of {info.field_name}")
            try:
                settings = TrainingSettings.model_validate({info.field_name: item})
            except ValidationError as err:
                reason = err.errors()[0]["msg"].removeprefix("Value error, ")
                raise ValueError(f"{item!r} is not allowed: {reason}") from None
            checked.append(getattr(settings, info.field_name))
        return _unique(checked, f"values of {info.field_name}")

    @property
    def axes(self) -> dict[str, list]:
        """The training settings this grid varies, in expansion order, with their values."""
        return {name: getattr(self, name) for name in TRAINING_AXES if getattr(self, name) is not None}


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


class BaselineSpec(_Strict):
    """What every configuration is compared with (``[baseline]``): the configuration of the same dataset and seed
    with these values and its own values of every axis left out here. Today's study needs none: its baseline,
    the default, is no upsampling (ratio 0.0, so any mode) and focal loss off. A value given must be in the grid."""

    upsampling_ratio: float = 0.0
    focal_loss: bool = False
    upsampling_mode: UpsamplingMode | None = None
    hidden_units: int | None = None
    dropout: float | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    val_split: float | None = None
    focal_loss_gamma: float | None = None
    focal_loss_alpha: float | None = None
    crop_mode: str | None = None
    overlap: float | None = None


_GRID_LISTS = {"upsampling_mode": "upsampling_modes", "upsampling_ratio": "upsampling_ratios",
               "focal_loss": "focal_loss"}


class Sweep(_Strict):
    """A whole sweep file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    datasets: list[DatasetSpec] = Field(min_length=1)
    grid: GridSpec
    training: TrainingSettings = TrainingSettings()
    baseline: BaselineSpec = BaselineSpec()
    analysis: AnalysisSettings = AnalysisSettings()
    data: DataSpec = DataSpec()

    @field_validator("datasets")
    @classmethod
    def _dataset_names_unique(cls, value: list[DatasetSpec]) -> list[DatasetSpec]:
        _unique([d.name for d in value], "dataset names")
        return value

    @model_validator(mode="after")
    def _axes_and_baseline_agree(self) -> Sweep:
        both = [name for name in self.grid.axes if name in self.training.model_fields_set]
        if both:
            raise ValueError(f"{', '.join(both)}: set both in [grid] and in [training]; a setting is either swept "
                             "(a list under [grid]) or fixed (one value under [training])")
        for name in sorted(self.baseline.model_fields_set):
            value = getattr(self.baseline, name)
            listed = _GRID_LISTS.get(name, name)
            values = getattr(self.grid, listed)
            if values is None:
                raise ValueError(f"baseline.{name}: not an axis of this grid (the baseline names values of "
                                 f"[grid] lists; the grid varies {', '.join(self.varied)})")
            if value not in values:
                raise ValueError(f"baseline.{name}: {value!r} is not among grid.{listed} {values!r}")
        return self

    @property
    def axes(self) -> dict[str, list]:
        """The training settings swept beyond upsampling and focal loss, in expansion order."""
        return self.grid.axes

    @property
    def varied(self) -> list[str]:
        """Every axis of a configuration that [baseline] may fix (seeds and datasets are always paired)."""
        return ["upsampling_mode", "upsampling_ratio", "focal_loss", *self.axes]

    def baseline_values(self) -> dict[str, Any]:
        """The axis values that make a configuration the baseline; the axes not named are free."""
        return {name: getattr(self.baseline, name) for name in self.varied
                if getattr(self.baseline, name) is not None}


@dataclass(frozen=True)
class Configuration:
    """One point of the grid. ``run_id`` names the training run that produces its result;
    configurations that are the same experiment (ratio 0.0 in every mode) share one. ``settings``: the values
    of the grid's training axes (``Sweep.axes``), empty for a sweep without them."""

    index: int
    dataset: str
    upsampling_mode: str
    upsampling_ratio: float
    focal_loss: bool
    seed: int
    run_id: str
    settings: dict[str, Any] = field(default_factory=dict, hash=False)

    def as_dict(self) -> dict:
        """As written to manifests and results; without ``settings`` when there are none, so a sweep without
        training axes writes what it wrote before they existed."""
        found = asdict(self)
        if not self.settings:
            del found["settings"]
        return found

    def row(self) -> dict:
        """Flat, for tables: the axis values as columns between focal_loss and seed, in expansion order."""
        return {"index": self.index, "dataset": self.dataset, "upsampling_mode": self.upsampling_mode,
                "upsampling_ratio": self.upsampling_ratio, "focal_loss": self.focal_loss, **self.settings,
                "seed": self.seed, "run_id": self.run_id}

    @property
    def extraction(self) -> str:
        """The extraction axes' values in words ("crop_mode=first"), "" when the sweep varies none: the name of
        the embeddings this configuration needs, beside the dataset's."""
        return ",".join(f"{name}={self.settings[name]}" for name in EXTRACTION_AXES if name in self.settings)


def slug(name: str) -> str:
    """A file-system-safe stand-in for a user-given name; unique because a hash is added when it differs."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "_"
    if safe == name:
        return name
    return f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _value_tag(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_id_for(dataset: str, mode: str, ratio: float, focal: bool, seed: int, dedupe: bool,
               settings: dict[str, Any] | None = None) -> str:
    """At ratio 0.0 BirdNET never calls upsampling, so with ``dedupe`` the mode is not part of the run; nor are
    focal gamma and alpha while focal loss is off. The training axes' values come before the seed."""
    mode_part = "none" if dedupe and ratio == 0.0 else mode
    axes = [f"{AXIS_TAGS[name]}{_value_tag(value)}" for name, value in (settings or {}).items()
            if not (dedupe and not focal and name in FOCAL_ONLY_AXES)]
    parts = [slug(dataset), f"{mode_part}-{ratio:g}", "focal" if focal else "bce", *axes, f"seed{seed}"]
    return "__".join(parts)


def expand(sweep: Sweep, dedupe: bool = True) -> list[Configuration]:
    """All configurations in the documented order."""
    grid, axes = sweep.grid, sweep.axes
    points = itertools.product(sweep.datasets, grid.upsampling_modes, grid.upsampling_ratios, grid.focal_loss,
                               *axes.values(), grid.seeds)
    configurations = []
    for i, (ds, mode, ratio, focal, *values, seed) in enumerate(points):
        settings = dict(zip(axes, values, strict=True))
        configurations.append(Configuration(
            index=i, dataset=ds.name, upsampling_mode=mode, upsampling_ratio=ratio, focal_loss=focal, seed=seed,
            run_id=run_id_for(ds.name, mode, ratio, focal, seed, dedupe, settings), settings=settings))
    return configurations


def training_for(sweep: Sweep, config: Configuration) -> TrainingSettings:
    """The training settings of one configuration: the sweep's fixed ones with its axis values."""
    return sweep.training.model_copy(update=config.settings) if config.settings else sweep.training


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
