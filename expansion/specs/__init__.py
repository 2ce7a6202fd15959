"""Experiment specs: the one source of truth for the CLI, the REST API and the stored job row.

Plain pydantic, importable without torch (the API process validates specs with this module
alone). Every field is bounded; errors name the field.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from expansion.specs.predictor_names import (
    DEFAULT_SELECTION_PREDICTOR,
    SELECTABLE_PREDICTORS,
    check_selection_predictor,
)

DatasetName = Literal["mnist1d", "digits", "teacher", "cifar10"]
ModelKind = Literal["mlp", "conv1d", "conv2d"]
NormKind = Literal["layer", "rms", "group", "batch"]
ScalingRule = Literal["constant", "inv_sqrt_depth", "inv_depth", "learnable"]
ExperimentKind = Literal["train", "expand", "grow", "sweep", "sweep_point"]

MAX_SEED = 2**31 - 1
IMAGE_DATASETS = ("digits", "cifar10")
"""Data sets whose default `model.kind` is `conv2d` (others default to `conv1d`)."""


class StrictModel(BaseModel):
    """Base for every spec: unknown keys are errors, values are checked on assignment."""

    # Attribute docstrings become field descriptions: the OpenAPI schema (/docs) and
    # docs/specs.md show them.
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, frozen=False, use_attribute_docstrings=True
    )


class DataSpec(StrictModel):
    """Which data set, how it is split and how much of it is used."""

    name: DatasetName = "mnist1d"
    """Built-in data set: `mnist1d`, `digits`, `teacher` or `cifar10` (local archive)."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed of the train/validation split (and of the teacher network)."""
    val_fraction: float = Field(0.1, gt=0.0, le=0.5)
    """Fraction of the training set held out for validation."""
    certify_fraction: float | None = Field(None, ge=0.0, le=0.5)
    """Fraction of the training set carved off (before training, never trained on, unused by
    the line search) for the descent certificate's batches. None = DEFAULT_CERTIFY_FRACTION
    for `expand` experiments on a finite data set, 0 otherwise; `teacher` draws fresh samples
    instead and needs none."""
    max_train_samples: int | None = Field(None, ge=16, le=10_000_000)
    """Use at most this many training samples (before the validation split); None = all."""
    augment: bool = False
    """Random shifts (and flips for images) applied on the device during training."""
    teacher_dim: int = Field(32, ge=2, le=4096)
    """`teacher` only: input dimension of the Gaussian inputs."""
    teacher_classes: int = Field(10, ge=2, le=1000)
    """`teacher` only: number of classes."""
    teacher_width: int = Field(64, ge=2, le=4096)
    """`teacher` only: width of the random post-norm teacher network."""
    teacher_depth: int = Field(2, ge=1, le=64)
    """`teacher` only: residual blocks in the teacher network."""
    teacher_train_size: int = Field(4000, ge=16, le=10_000_000)
    """`teacher` only: training samples drawn."""
    teacher_test_size: int = Field(1000, ge=16, le=10_000_000)
    """`teacher` only: test samples drawn."""

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> DataSpec:
        if self.val_fraction + (self.certify_fraction or 0.0) > 0.8:
            raise ValueError("val_fraction + certify_fraction must leave at least 20% to train on")
        return self


DEFAULT_CERTIFY_FRACTION = 0.2
"""Certificate split of an `expand` experiment when `data.certify_fraction` is not given."""


class ModelSpec(StrictModel):
    """A post-norm residual network h_{l+1} = Norm(h_l + alpha_l F_l(h_l)) (DESIGN.md 1.1)."""

    kind: ModelKind = "conv1d"
    """`mlp` (linear branches), `conv1d` (sequences), `conv2d` (images, with stages); when
    omitted, `conv2d` with `kernel_size` 3 for image data (`digits`, `cifar10`), else `conv1d`."""
    width: int = Field(64, ge=1, le=4096)
    """Channels (conv) or features (mlp) of the first stage."""
    depth: int = Field(4, ge=1, le=256)
    """Residual blocks per stage."""
    stages: int = Field(1, ge=1, le=5)
    """Stages (conv2d only): width doubles and resolution halves between stages."""
    hidden_mult: int = Field(1, ge=1, le=8)
    """Width of a branch's hidden layer as a multiple of the block width."""
    kernel_size: int = Field(5, ge=1, le=15)
    """Convolution kernel size (odd), conv kinds only."""
    norm: NormKind = "layer"
    """`layer` and `rms` are parameter-free; `group` is affine; `batch` keeps running statistics."""
    groups: int = Field(8, ge=1, le=512)
    """Groups of `group` norm; must divide every stage width."""
    scaling: ScalingRule = "constant"
    """Branch scale rule: alpha, 1/sqrt(L), 1/L, or a learnable scalar per block."""
    alpha: float = Field(1.0, ge=0.0, le=10.0)
    """Branch scale of the `constant` rule, and the initial value of `learnable` scales."""
    activation: Literal["relu", "gelu"] = "relu"
    """Activation inside the branch."""

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd so that convolutions keep the sequence length")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        problems = []
        if self.stages > 1 and self.kind != "conv2d":
            problems.append(("stages", "stages > 1 is only defined for kind conv2d"))
        if self.norm == "group":
            widths = [self.width * 2**s for s in range(self.stages)]
            if any(w % self.groups for w in widths):
                problems.append(
                    (
                        "groups",
                        f"groups={self.groups} must divide every stage width {widths} "
                        f"(model.width={self.width}, doubled at each stage)",
                    )
                )
        raise_problems(problems)
        return self

    @property
    def total_blocks(self) -> int:
        """Number of residual blocks over all stages."""
        return self.depth * self.stages

    @property
    def num_positions(self) -> int:
        """Number of insertion positions: depth + 1 per stage."""
        return (self.depth + 1) * self.stages


class TrainSpec(StrictModel):
    """Optimization of the base network (and the default for continuation)."""

    optimizer: Literal["adamw", "sgd"] = "adamw"
    """`adamw` (decoupled weight decay) or `sgd` with momentum."""
    lr: float = Field(3e-3, gt=0.0, le=10.0)
    """Peak learning rate."""
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    """Weight decay (decoupled for AdamW, L2 for SGD) on weight matrices and kernels only."""
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    """SGD momentum (ignored by AdamW)."""
    schedule: Literal["constant", "cosine"] = "cosine"
    """Learning-rate schedule after warmup: constant, or cosine decay to 5% of `lr` at the end."""
    warmup_steps: int = Field(0, ge=0, le=1_000_000)
    """Steps of linear warmup from 0 to `lr`."""
    epochs: int = Field(10, ge=1, le=10_000)
    """Passes over the training set."""
    batch_size: int = Field(128, ge=1, le=65_536)
    """Training examples per optimizer step."""
    precision: Literal["32", "bf16-mixed"] = "32"
    """Numeric precision: `32` (float32) or `bf16-mixed` (bfloat16 autocast, GPUs)."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed of initialization and data order."""
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    """Where to train: `auto` takes a GPU when there is one."""
    devices: int = Field(1, ge=1, le=64)
    """Devices (one process each) for one job's training, DDP across them: `batch_size` stays
    the global batch, each device takes batch_size / devices of it; every other stage runs
    identically on every device's process and only the first one writes (docs/science.md)."""
    num_nodes: int = Field(1, ge=1, le=1024)
    """Hosts of a multi-node run started by an external launcher (torchrun, SLURM) with
    `devices` processes per host (docs/deployment.md); the worker runs 1-node jobs only."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    """Label smoothing of the training cross-entropy (evaluation never smooths)."""
    channels_last: bool | None = None
    """Channels-last (NHWC) memory format of a conv2d network's weights and input batches;
    None = on for conv2d networks trained on a CUDA device, off otherwise."""
    compile: bool = False
    """Compile the network's training forward with `torch.compile`; the first steps pay the
    compilation (seconds on a GPU, a minute or more on a small CPU)."""

    @model_validator(mode="after")
    def _batch_splits_across_devices(self) -> TrainSpec:
        processes = self.devices * self.num_nodes
        if self.batch_size % processes:
            raise_problems(
                [
                    (
                        "batch_size",
                        f"the global batch {self.batch_size} must split evenly across "
                        f"{processes} devices (devices x num_nodes): use a multiple of "
                        f"{processes}",
                    )
                ]
            )
        return self


class ExpandSpec(StrictModel):
    """Scan every insertion position, choose some, and measure them against a control."""

    select: Literal["all", "explicit", "top_k", "certified"] = "top_k"
    """Which scanned positions get a controlled continuation: all, an explicit list, the top k
    by the certificate's lower bound (ties by U), or exactly those whose family-wise (Holm)
    verdict holds (the control is always trained)."""
    positions: list[Annotated[int, Field(ge=0, le=10_000)]] = Field(
        default_factory=list, max_length=1024
    )
    """Positions for `select: explicit` (0 = right after the stem)."""
    top_k: int = Field(2, ge=1, le=1024)
    """Number of positions for `select: top_k`, ranked by the predictor `by` (certificate_lcb:
    the lower bound of the minimum over seeds of |E g|^2, ties by U)."""
    by: str = Field(
        DEFAULT_SELECTION_PREDICTOR,
        max_length=64,
        json_schema_extra={"enum": list(SELECTABLE_PREDICTORS)},
    )
    """Predictor that ranks positions for `select: top_k` (larger = predicted larger gain);
    the default is the best-calibrated one measured (docs/calibration.md)."""
    probe_steps: int | None = Field(None, ge=1, le=1_000_000)
    """k of the k-step probe predictor (only the new block trains); None = 10% of
    continue_steps."""
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(
        default_factory=lambda: [0, 1, 2], min_length=1, max_length=64
    )
    """Seeds of the new blocks' W1 and of the continuation's data order."""
    continue_steps: int = Field(200, ge=1, le=10_000_000)
    """K: optimizer steps of continuation in both arms."""
    continue_lr: float | None = Field(None, gt=0.0, le=10.0)
    """Learning rate of continuation; None = the base training's final learning rate."""
    batch_arms: Literal["auto", "on", "off"] = "auto"
    """Train continuation arms of one architecture together (stacked, `torch.vmap`) or one by
    one; the same results up to float rounding. `auto`: together on a GPU, one by one on the
    CPU, where together was measured no faster (docs/benchmarks.md). Not with `model.norm:
    batch`."""
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    """Confidence of the one-sided lower bound and of the intervals."""
    grad_batch_size: int = Field(256, ge=2, le=65_536)
    """Batch size of the per-batch gradients behind the unbiased estimate."""
    grad_batches: int | None = Field(None, ge=2, le=100_000)
    """At most this many batches, on the training set (for g_train) and on the certificate
    split (n of the certificate); None = all of each (`teacher`: 16 fresh certificate
    batches)."""
    min_certificate_batches: int = Field(8, ge=8, le=100_000)
    """Fewest certificate batches for a decided verdict; fewer give `undecided`."""
    line_search_points: int = Field(8, ge=2, le=64)
    """Step sizes tried on validation data for the jumpboard model."""

    @field_validator("by")
    @classmethod
    def _known_predictor(cls, value: str) -> str:
        return check_selection_predictor(value)

    @model_validator(mode="after")
    def _explicit_needs_positions(self) -> ExpandSpec:
        problems = []
        if self.select == "explicit" and not self.positions:
            problems.append(("positions", "select 'explicit' needs a non-empty positions list"))
        if len(set(self.seeds)) != len(self.seeds):
            problems.append(("seeds", "seeds must be distinct"))
        raise_problems(problems)
        return self


class GrowSpec(StrictModel):
    """A growth schedule: insert blocks at given epochs up to a target depth (DESIGN.md 1.6)."""

    at_epochs: list[Annotated[int, Field(ge=1, le=10_000)]] = Field(min_length=1, max_length=256)
    """Epochs after which blocks are inserted (strictly increasing)."""
    policy: Literal["explicit", "best", "stack", "interpolate", "uniform"] = "best"
    """Where to insert: an explicit list, the best certified gain, or a fixed rule."""
    positions: list[Annotated[int, Field(ge=0, le=10_000)]] = Field(
        default_factory=list, max_length=256
    )
    """`policy: explicit`: one position per event."""
    blocks_per_event: int = Field(1, ge=1, le=64)
    """Blocks inserted at each growth event."""
    target_depth: int = Field(ge=1, le=1024)
    """Total blocks at which growth stops."""
    controls: bool = True
    """Also train the two controls: target depth from scratch, and the starting depth."""

    @model_validator(mode="after")
    def _schedule(self) -> GrowSpec:
        problems = []
        if any(b <= a for a, b in zip(self.at_epochs, self.at_epochs[1:], strict=False)):
            problems.append(("at_epochs", "at_epochs must be strictly increasing"))
        if self.policy == "explicit" and len(self.positions) < len(self.at_epochs):
            problems.append(
                ("positions", "policy 'explicit' needs one position per entry of at_epochs")
            )
        raise_problems(problems)
        return self


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
        if (
            raw["data"].get("name") in IMAGE_DATASETS
            and isinstance(model, dict)
            and "kind" not in model
        ):
            return {**raw, "model": {"kernel_size": 3, **model, "kind": "conv2d"}}
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
        if self.model.kind == "conv2d" and self.data.name in ("mnist1d", "teacher"):
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

    def _cross_section_problems(self) -> list[tuple[str, str]]:
        problems = super()._cross_section_problems()
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


class MeasureSpec(StrictModel):
    """What a sweep measures at each grid point besides the risks (expansion/models/measures.py)."""

    projections: int = Field(16, ge=2, le=1024)
    """Random projections per input of the input-sensitivity (Hutchinson) estimate."""
    samples: int = Field(512, ge=16, le=100_000)
    """Test inputs the input sensitivity is averaged over (at most the test set)."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed of the projections and of the choice of inputs."""


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

    @model_validator(mode="after")
    def _grid_size(self) -> SweepExperiment:
        size = 1
        for values in self.grid.values():
            size *= len(values)
        if size > MAX_GRID_POINTS:
            raise ValueError(f"grid has {size} points; at most {MAX_GRID_POINTS} are allowed")
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
# mypy reads an Annotated union of five models as a value, not a type; pydantic takes it as one
# (some mypy and pydantic versions accept it, hence unused-ignore).
_ADAPTER: TypeAdapter[AnyExperiment] = TypeAdapter(ExperimentSpec)  # type: ignore[arg-type, unused-ignore]
_KINDS = ("train", "expand", "grow", "sweep", "sweep_point")
_KIND_CLASSES: dict[str, type[_ExperimentBase]] = {
    "train": TrainExperiment,
    "expand": ExpandExperiment,
    "grow": GrowExperiment,
    "sweep": SweepExperiment,
    "sweep_point": SweepPointExperiment,
}

# (channels, length) for sequences, (channels, height, width) for images, flat for mlp.
_RAW_SHAPES: dict[str, tuple[int, ...]] = {
    "mnist1d": (1, 40),
    "digits": (1, 8, 8),
    "cifar10": (3, 32, 32),
}
NUM_CLASSES: dict[str, int] = {"mnist1d": 10, "digits": 10, "cifar10": 10}


def input_shape(data: DataSpec, kind: str) -> tuple[int, ...]:
    """Shape of one input sample as the model of `kind` sees it."""
    raw = (1, data.teacher_dim) if data.name == "teacher" else _RAW_SHAPES[data.name]
    flat = 1
    for n in raw:
        flat *= n
    if kind == "mlp":
        return (flat,)
    if kind == "conv1d":
        return (raw[0], flat // raw[0])
    return raw


def num_classes(data: DataSpec) -> int:
    """Number of classes of the data set."""
    return data.teacher_classes if data.name == "teacher" else NUM_CLASSES[data.name]


class SpecError(ValueError):
    """A spec failed validation; `problems` holds one line per problem, each naming its field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _field_path(loc: tuple[Any, ...]) -> str:
    # The discriminated union puts the kind tag first (e.g. 'expand'); it is not a field.
    # A bare tag is a whole-spec (model validator) error.
    parts = [str(p) for p in loc]
    if parts and parts[0] in _KINDS:
        parts = parts[1:]
    return ".".join(parts) or "spec"


CROSS_FIELD_ERROR = "cross_field"


def raise_problems(problems: list[tuple[str, str]]) -> None:
    """Raise the cross-field problems a model validator found, each with its field path
    relative to the validated model; `describe_errors` turns them into full dotted paths."""
    if problems:
        path, message = problems[0]
        raise PydanticCustomError(
            CROSS_FIELD_ERROR,
            "{path}: {message}",
            {"path": path, "message": message, "problems": [list(p) for p in problems]},
        )


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem: `full.dotted.path: reason` (cross-field problems included)."""
    lines = []
    for err in exc.errors(include_url=False):
        base = _field_path(tuple(err["loc"]))
        if err["type"] == CROSS_FIELD_ERROR:
            for path, message in (err.get("ctx") or {}).get("problems", []):
                full = path if base == "spec" else f"{base}.{path}"
                lines.append(f"{full}: {message}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{base}: {msg}")
    return lines


def _drop_failed_fields(raw: dict[str, Any], exc: ValidationError) -> list[str]:
    """Remove from `raw` (in place) every field with a per-field error, so that validating
    again runs the cross-field checks on the rest; returns the dotted paths removed."""
    dropped = []
    for err in exc.errors(include_url=False):
        if err["type"] == CROSS_FIELD_ERROR:
            continue
        parts = [p for p in err["loc"]]
        if parts and parts[0] in ("train", "expand", "grow"):
            parts = parts[1:]
        # The field itself: a top-level key, or a key inside a section (not a list item).
        keep = 2 if len(parts) >= 2 and isinstance(raw.get(str(parts[0])), dict) else 1
        field = [str(p) for p in parts[:keep]]
        if not field or field[0] == "kind":
            continue
        container: Any = raw
        for key in field[:-1]:
            container = container.get(key) if isinstance(container, dict) else None
        if isinstance(container, dict) and field[-1] in container:
            del container[field[-1]]
            dropped.append(".".join(field))
    return dropped


def _section_level_only(exc: ValidationError) -> bool:
    return all(err["type"] == CROSS_FIELD_ERROR for err in exc.errors(include_url=False))


def _experiment_level_problems(work: dict[str, Any]) -> list[str]:
    """The cross-section checks of the spec in `work`, run even when a section failed only its
    own cross-field checks (that section is taken as written); [] when a section is unusable."""
    cls = _KIND_CLASSES.get(str(work.get("kind", "train")))
    if cls is None:
        return []
    values: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        annotation = info.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            if name in work:
                values[name] = work[name]
            continue
        if name not in work:
            if info.is_required():
                return []
            continue
        section = work[name]
        if not isinstance(section, dict):
            return []
        try:
            values[name] = annotation.model_validate(section)
        except ValidationError as exc:
            if not _section_level_only(exc):
                return []
            values[name] = annotation.model_construct(**section)
    instance = cls.model_construct(**values)
    try:
        found = instance._cross_section_problems()
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return []  # a value of the wrong shape: its own problem is already listed
    return [f"{path}: {message}" for path, message in found]


def _problems_in_one_pass(raw: dict[str, Any], first: ValidationError) -> list[str]:
    """Every problem of an invalid spec: the per-field ones, then the cross-field ones found
    by validating again without the failed fields, then the cross-section ones (a cross-field
    problem that mentions a failed field is left out: it would judge a default, not the
    user's value)."""
    problems = describe_errors(first)
    work = copy.deepcopy(raw)
    dropped = _drop_failed_fields(work, first)

    def add(lines: list[str]) -> None:
        for line in lines:
            path = line.partition(": ")[0]
            mentions = any(d in line or path.startswith(d) for d in dropped)
            if line not in problems and not mentions:
                problems.append(line)

    for _ in range(4):
        if not dropped:
            break
        try:
            _ADAPTER.validate_python(work)
            break
        except ValidationError as exc:
            add(describe_errors(exc))
            newly = _drop_failed_fields(work, exc)
            if not newly:
                break
            dropped += newly
    add(_experiment_level_problems(work))
    return problems


def parse_spec(raw: Any) -> AnyExperiment:
    """Validate a raw mapping into an experiment spec, or raise SpecError listing every problem.

    A sweep is validated as a whole: its base, then every grid point (expansion.specs.grid).
    """
    if not isinstance(raw, dict):
        raise SpecError([f"spec: must be a mapping, not {type(raw).__name__}"])
    raw = dict(raw)
    raw.setdefault("kind", "train")
    if raw["kind"] not in _KINDS:
        raise SpecError([f"kind: must be one of {', '.join(_KINDS)} (got {raw['kind']!r})"])
    try:
        spec = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise SpecError(_problems_in_one_pass(raw, exc)) from None
    if isinstance(spec, SweepExperiment):
        from expansion.specs.grid import grid_problems

        problems = grid_problems(spec)
        if problems:
            raise SpecError(problems)
    return spec


def spec_json_schema() -> dict[str, Any]:
    """JSON schema of the experiment spec union (for the API docs and editors)."""
    return _ADAPTER.json_schema()
