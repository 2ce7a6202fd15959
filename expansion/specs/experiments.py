"""The experiment kinds (`train`, `expand`, `grow`, `sweep`, `sweep_point`): sections put
together, with their cross-section checks.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    Field,
    PrivateAttr,
    model_validator,
)

from expansion.specs.problems import raise_problems
from expansion.specs.sections import (
    DEFAULT_CERTIFY_FRACTION,
    IMAGE_DATASETS,
    MAX_GRAD_BATCH_SIZE,
    USER_DATASETS,
    DataSpec,
    ExpandSpec,
    GrowSpec,
    MeasureSpec,
    ModelSpec,
    StrictModel,
    TrainSpec,
    input_shape,
    is_image_data,
)
from expansion.specs.split_sizes import split_sizes

ExperimentKind = Literal["train", "expand", "grow", "sweep", "sweep_point"]


class _ExperimentBase(StrictModel):
    name: str = Field("", max_length=120, pattern=r"^[\w .:+-]*$")
    """Free label shown in listings."""
    data: DataSpec = Field(default_factory=DataSpec)
    """The data set and its split."""
    model: ModelSpec = Field(default_factory=ModelSpec)
    """The base network."""
    train: TrainSpec = Field(default_factory=TrainSpec)
    """Optimization of the base network."""

    @model_validator(mode="before")
    @classmethod
    def _images_default_to_conv2d(cls, raw: Any) -> Any:
        # A spec that names image data but no model kind means the image network with 3x3
        # kernels, not a conv1d over flattened pixels (39% error on digits). Measured on
        # digits: width 64, depth 4 with 5x5 kernels at lr 3e-3 without warmup stays at
        # chance (the branches outgrow the stream in the first steps: a learning rate too
        # large for a fan-in of 1,600); it trains with 3x3 kernels, with lr <= 2e-3, or with
        # 30 warmup steps (docs/benchmarks.md, GPU path).
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
            return raw
        model = raw.get("model", {})
        shape = raw["data"].get("input_shape")
        if (
            (
                raw["data"].get("name") in IMAGE_DATASETS
                or (
                    raw["data"].get("name") in USER_DATASETS
                    and isinstance(shape, list)
                    and len(shape) == 3
                )
            )
            and isinstance(model, dict)
            and "kind" not in model
        ):
            return {**raw, "model": {"kernel_size": 3, **model, "kind": "conv2d"}}
        if (
            raw["data"].get("name") in USER_DATASETS
            and isinstance(shape, list)
            and len(shape) == 1
            and isinstance(model, dict)
            and "kind" not in model
        ):  # flat feature vectors: an mlp, not a convolution over unordered features
            return {**raw, "model": {**model, "kind": "mlp"}}
        return raw

    @model_validator(mode="after")
    def _data_fits_model(self) -> _ExperimentBase:
        raise_problems(self._cross_section_problems())
        return self

    def _cross_section_problems(self) -> list[tuple[str, str]]:
        problems = []
        if self.train.channels_last and self.model.kind != "conv2d":
            problems.append(
                (
                    "train.channels_last",
                    f"channels_last applies to conv2d networks only, not model.kind "
                    f"{self.model.kind}",
                )
            )
        if self.model.kind == "conv2d" and not is_image_data(self.data):
            problems.append(
                (
                    "model.kind",
                    f"model.kind conv2d needs image data, not data.name {self.data.name}",
                )
            )
        elif self.model.kind == "conv2d":
            side = input_shape(self.data, self.model.kind)[-1]
            if side >> (self.model.stages - 1) < 1:
                problems.append(
                    (
                        "model.stages",
                        f"model.stages={self.model.stages} downsample {side}px below 1px",
                    )
                )
        return problems


class TrainExperiment(_ExperimentBase):
    """Train a base network."""

    kind: Literal["train"] = "train"
    """Experiment kind: `train` a base network."""


class ExpandExperiment(_ExperimentBase):
    """Train a base, scan every insertion position, and measure chosen ones against a control."""

    kind: Literal["expand"] = "expand"
    """Experiment kind: `expand` (train, scan, certify, measure against a control)."""
    expand: ExpandSpec = Field(default_factory=ExpandSpec)
    """The scan, the choice of positions and the controlled continuation."""

    @model_validator(mode="before")
    @classmethod
    def _default_certificate_split(cls, raw: Any) -> Any:
        # Stored data sets hold out a certificate split by default; the teacher task draws
        # fresh certificate samples instead.
        if not isinstance(raw, dict):
            return raw
        data = raw.get("data", {})
        if (
            isinstance(data, dict)
            and data.get("name", "mnist1d") != "teacher"
            and data.get("certify_fraction") is None
        ):
            return {**raw, "data": {**data, "certify_fraction": DEFAULT_CERTIFY_FRACTION}}
        return raw

    @model_validator(mode="after")
    def _derive_grad_batch_size(self) -> ExpandExperiment:
        # Filled in, so that the stored spec says which batch size the job used.
        if self.expand.grad_batch_size is None:
            self.expand.grad_batch_size = self.grad_batch_size
        return self

    @property
    def grad_batch_size(self) -> int:
        """`expand.grad_batch_size`, or, unset, the largest size up to MAX_GRAD_BATCH_SIZE
        that gives the certificate split `expand.min_certificate_batches` batches (at least
        2; a split too small for that is a problem `validate` names)."""
        if self.expand.grad_batch_size is not None:
            return self.expand.grad_batch_size
        if self.data.name == "teacher":
            return MAX_GRAD_BATCH_SIZE
        certify = split_sizes(self.data).certify
        return max(2, min(MAX_GRAD_BATCH_SIZE, certify // self.expand.min_certificate_batches))

    def _certificate_split_problems(self) -> list[tuple[str, str]]:
        if self.data.name == "teacher" or not self.data.certify_fraction:
            return []
        certify = split_sizes(self.data).certify
        size = self.grad_batch_size
        if certify // size >= 2:
            return []
        field = "expand.grad_batch_size" if self.expand.grad_batch_size else "data.certify_fraction"
        return [
            (
                field,
                f"the certificate split has {certify} samples, fewer than 2 batches of "
                f"expand.grad_batch_size={size}: raise data.certify_fraction or lower "
                "expand.grad_batch_size",
            )
        ]

    def _cross_section_problems(self) -> list[tuple[str, str]]:
        problems = super()._cross_section_problems()
        problems += self._certificate_split_problems()
        if self.expand.select == "top_k" and self.expand.top_k > self.model.num_positions:
            problems.append(
                (
                    "expand.top_k",
                    f"top_k {self.expand.top_k} is more than the {self.model.num_positions} "
                    "positions model.depth and model.stages give",
                )
            )
        if self.data.name == "teacher":
            if self.data.certify_fraction:
                problems.append(
                    (
                        "data.certify_fraction",
                        "the teacher task draws fresh certificate samples; leave it unset",
                    )
                )
        elif self.data.certify_fraction == 0.0:
            problems.append(
                (
                    "data.certify_fraction",
                    "an expand experiment needs a certificate split (examples the base never "
                    "trained on); use a value > 0",
                )
            )
        if self.expand.batch_arms == "on" and self.model.norm == "batch":
            problems.append(
                (
                    "expand.batch_arms",
                    "arms cannot train together with model.norm 'batch' (its running "
                    "statistics): use 'auto' or 'off'",
                )
            )
        bad = [p for p in self.expand.positions if p >= self.model.num_positions]
        if bad:
            problems.append(
                (
                    "expand.positions",
                    f"positions {bad} out of range: model.depth and model.stages give "
                    f"positions 0..{self.model.num_positions - 1}",
                )
            )
        return problems


class GrowExperiment(_ExperimentBase):
    """Grow a network during training by a schedule, against two controls."""

    kind: Literal["grow"] = "grow"
    """Experiment kind: `grow` (a growth schedule against two controls)."""
    grow: GrowSpec
    """The growth schedule."""

    def _cross_section_problems(self) -> list[tuple[str, str]]:
        problems = super()._cross_section_problems()
        if self.grow.target_depth <= self.model.total_blocks:
            problems.append(
                (
                    "grow.target_depth",
                    f"target_depth {self.grow.target_depth} must exceed the starting "
                    f"{self.model.total_blocks} blocks (model.depth x model.stages)",
                )
            )
        if self.grow.at_epochs[-1] >= self.train.epochs:
            problems.append(
                (
                    "grow.at_epochs",
                    f"at_epochs must all be before train.epochs ({self.train.epochs})",
                )
            )
        return problems


GridValue = str | int | float | bool | None


MAX_GRID_AXES = 8


MAX_GRID_VALUES = 64


MAX_GRID_POINTS = 512
"""A sweep expands to at most this many points (each one a job)."""


class _PointFields(_ExperimentBase):
    grow: GrowSpec | None = None
    """A growth schedule: every point is then a `grow` experiment (grown vs from scratch)."""
    measures: MeasureSpec = Field(default_factory=MeasureSpec)


class SweepPointExperiment(_PointFields):
    """One grid point of a sweep: a train (or, with `grow`, a grow) experiment plus measures."""

    kind: Literal["sweep_point"] = "sweep_point"
    sweep_index: int = Field(0, ge=0, le=MAX_GRID_POINTS)
    """Index of the point in its sweep's grid (row-major over the grid axes)."""
    coordinates: dict[Annotated[str, Field(max_length=64)], GridValue] = Field(
        default_factory=dict, max_length=MAX_GRID_AXES
    )
    """The grid values of this point, by dotted spec path."""

    @model_validator(mode="after")
    def _grow_schedule_fits(self) -> SweepPointExperiment:
        if self.grow is not None:
            # The grow kind's own checks (target beyond the start, events before the end).
            GrowExperiment.model_validate(self.experiment_dict())
        return self

    def experiment_dict(self) -> dict[str, Any]:
        """The train or grow spec this point runs, as a raw mapping."""
        raw = self.model_dump(
            mode="json", exclude={"kind", "measures", "sweep_index", "coordinates", "grow"}
        )
        if self.grow is None:
            return {**raw, "kind": "train"}
        return {**raw, "kind": "grow", "grow": self.grow.model_dump(mode="json")}

    def experiment_spec(self) -> TrainExperiment | GrowExperiment:
        """The train or grow spec this point runs."""
        raw = self.experiment_dict()
        if raw["kind"] == "grow":
            return GrowExperiment.model_validate(raw)
        return TrainExperiment.model_validate(raw)


class SweepExperiment(_PointFields):
    """A grid of experiments: the base fields here, a list of values per dotted spec path.

    Each grid point (the base with one value from every axis) is a `sweep_point` job of its
    own; `expansion.specs.grid` expands and validates them all before anything runs.
    """

    kind: Literal["sweep"] = "sweep"
    grid: dict[
        Annotated[str, Field(max_length=64, pattern=r"^[a-z_]+(\.[a-z_]+)*$")],
        Annotated[list[GridValue], Field(min_length=1, max_length=MAX_GRID_VALUES)],
    ] = Field(min_length=1, max_length=MAX_GRID_AXES)
    """Dotted spec path (e.g. `model.depth`) -> the values it takes."""
    _points: list[SweepPointExperiment] | None = PrivateAttr(default=None)
    # The validated grid points, kept by `expansion.specs.grid` when it first validates them:
    # parsing, the budget, the cost and the queue then share one walk of the grid.

    @model_validator(mode="after")
    def _grid_size(self) -> SweepExperiment:
        size = 1
        for values in self.grid.values():
            size *= len(values)
        if size > MAX_GRID_POINTS:
            raise ValueError(f"grid has {size} points; at most {MAX_GRID_POINTS} are allowed")
        # Runs again on every assignment (validate_assignment): points of an older grid go.
        self._points = None
        return self

    @property
    def grid_size(self) -> int:
        """Number of grid points."""
        size = 1
        for values in self.grid.values():
            size *= len(values)
        return size


AnyExperiment: TypeAlias = (
    TrainExperiment | ExpandExperiment | GrowExperiment | SweepExperiment | SweepPointExperiment
)


ExperimentSpec = Annotated[
    TrainExperiment | ExpandExperiment | GrowExperiment | SweepExperiment | SweepPointExperiment,
    Field(discriminator="kind"),
]
