"""The sections of a spec (`data`, `model`, `train`, `expand`, `grow`, `measure`) and the data
sets' shapes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from expansion.specs.predictor_names import (
    DEFAULT_SELECTION_PREDICTOR,
    SELECTABLE_PREDICTORS,
    check_selection_predictor,
)
from expansion.specs.problems import raise_problems

DatasetName = Literal[
    "mnist1d", "digits", "teacher", "cifar10", "cifar100", "uploaded", "npz", "folder"
]


USER_DATASETS = ("uploaded", "npz", "folder")
"""A researcher's own data: an uploaded data set (`id`), or a `.npz` / image folder at `path`.
Their input shape, class count and sizes come from the data (`expansion.userdata`), filled into
the spec where it enters (the API's intake, `jumpboard run`/`validate`)."""


ModelKind = Literal["mlp", "conv1d", "conv2d"]


NormKind = Literal["layer", "rms", "group", "batch"]


ScalingRule = Literal["constant", "inv_sqrt_depth", "inv_depth", "learnable"]


TrackerName = Literal["csv", "tensorboard", "mlflow", "wandb"]


MAX_SEED = 2**31 - 1


IMAGE_DATASETS = ("digits", "cifar10", "cifar100")
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
    """Built-in data set (`mnist1d`, `digits`, `teacher`, `cifar10` or `cifar100` from a local
    archive) or your own: `uploaded` (a data set uploaded to the service, named by `id`), `npz`
    or `folder` (a `.npz` file or an image folder at `path`, for `jumpboard run`)."""
    id: str | None = Field(None, pattern=r"^([0-9]{1,12}|[0-9a-f]{64})$")
    """`uploaded` only: the data set's id (`POST /api/v1/datasets`) or its sha256."""
    path: str | None = Field(None, min_length=1, max_length=4096)
    """`npz`/`folder`: the file or folder to read; `uploaded`: filled in by the service with the
    stored file the workers read."""
    sha256: SkipJsonSchema[str | None] = Field(None, pattern=r"^[0-9a-f]{64}$")
    """`uploaded` only: filled in by the service, the content address of the stored file."""
    input_shape: SkipJsonSchema[list[Annotated[int, Field(ge=1, le=1_000_000)]] | None] = Field(
        None, min_length=1, max_length=3
    )
    """Your own data only, inferred from it: one sample's raw shape, (features,),
    (channels, length) or (channels, height, width)."""
    classes: SkipJsonSchema[int | None] = Field(None, ge=2, le=100_000)
    """Your own data only, inferred from it: the number of classes."""
    train_size: SkipJsonSchema[int | None] = Field(None, ge=1, le=100_000_000)
    """Your own data only, inferred from it: training examples (its own validation split not
    included)."""
    val_size: SkipJsonSchema[int | None] = Field(None, ge=0, le=100_000_000)
    """Your own data only, inferred from it: examples of its own validation split (`x_val`,
    `val/`); when there are some, `val_fraction` does not apply."""
    test_size: SkipJsonSchema[int | None] = Field(None, ge=1, le=100_000_000)
    """Your own data only, inferred from it: test examples."""
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

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        # `id: 3` in YAML or JSON names the same data set as `id: "3"`.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> DataSpec:
        if self.val_fraction + (self.certify_fraction or 0.0) > 0.8:
            raise ValueError("val_fraction + certify_fraction must leave at least 20% to train on")
        raise_problems(self._user_data_problems())
        return self

    def _user_data_problems(self) -> list[tuple[str, str]]:
        if self.name not in USER_DATASETS:
            own = ("id", "path", "sha256", "input_shape", "classes", "train_size", "test_size")
            given = [f for f in own if getattr(self, f) is not None]
            return [(f, "applies to data.name uploaded, npz or folder only") for f in given]
        problems = []
        if self.name == "uploaded" and self.id is None and self.sha256 is None:
            problems.append(("id", "data.name uploaded needs the data set's id or sha256"))
        if self.name in ("npz", "folder") and self.path is None:
            problems.append(("path", f"data.name {self.name} needs the path of the data"))
        if not problems and (
            self.input_shape is None
            or self.classes is None
            or self.train_size is None
            or self.test_size is None
        ):
            problems.append(
                (
                    "input_shape",
                    "the input shape, class count and sizes of your own data are read from "
                    "the data where the spec enters (the service, `jumpboard run` or "
                    "`validate`); this spec was not resolved against its data",
                )
            )
        return problems or self._split_problems()

    def _split_problems(self) -> list[tuple[str, str]]:
        """Too few examples of your own data for the splits this spec asks for."""
        if self.train_size is None:
            return []
        n = min(self.train_size, self.max_train_samples or self.train_size)
        n_cert = round(n * (self.certify_fraction or 0.0))
        n_val = self.val_size or max(1, round(n * self.val_fraction))
        n_train = n - n_cert - (0 if self.val_size else n_val)
        problems = []
        if n_train < 2:
            problems.append(
                (
                    "train_size",
                    f"{n} training examples leave {n_train} to train on after the validation "
                    f"and certificate splits ({n_val} and {n_cert}): use more data or smaller "
                    "val_fraction / certify_fraction",
                )
            )
        if self.certify_fraction and n_cert < 1:
            problems.append(
                (
                    "certify_fraction",
                    f"certify_fraction {self.certify_fraction} of {n} training examples leaves "
                    "no certificate example",
                )
            )
        return problems


DEFAULT_CERTIFY_FRACTION = 0.2
"""Certificate split of an `expand` experiment when `data.certify_fraction` is not given."""
MAX_GRAD_BATCH_SIZE = 256
"""Largest derived `expand.grad_batch_size` (and the teacher task's)."""


class ModelSpec(StrictModel):
    """A post-norm residual network h_{l+1} = Norm(h_l + alpha_l F_l(h_l)) (docs/design.md 1.1)."""

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
    loggers: list[TrackerName] = Field(default_factory=list, max_length=4)
    """Experiment trackers that also get the job's curves and numbers, through Lightning's
    loggers, when the job ends: `csv` and `tensorboard` (folders under the job's artifacts,
    packed as `trackers.tar.gz`), `mlflow` (`JUMPBOARD_MLFLOW_TRACKING_URI`, else a file store
    under the artifacts), `wandb` (offline, where installed). The base run and every
    continuation arm are one run each, tagged `arm` (base / control / position), `position` and
    `seed`. A tracker that fails adds a warning to the job and fails nothing."""

    @field_validator("loggers")
    @classmethod
    def _distinct_loggers(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each logger at most once")
        return value

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
    by the predictor `by`, or exactly those whose certificate in nats holds family-wise (Holm
    over the scanned positions); the control is always trained."""
    positions: list[Annotated[int, Field(ge=0, le=10_000)]] = Field(
        default_factory=list, max_length=1024
    )
    """Positions for `select: explicit` (0 = right after the stem)."""
    top_k: int = Field(2, ge=1, le=1024)
    """Number of positions for `select: top_k`, ranked by the predictor `by` (seed means;
    certificate_u_test_limit ranks by the minimum over seeds of the |E g|^2 test's limit, ties
    by U)."""
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
    """Confidence of the two-sided intervals (certificate, realized gain) and of the |E g|^2
    test's one-sided limit."""
    min_effect: float = Field(0.0, ge=0.0, le=10.0)
    """The certificate's minimum effect, in nats of cross-entropy: the certificate `holds` when
    the interval of the jumpboard model's population risk decrease lies above it, `fails` when
    the interval lies below it, and is `undecided` otherwise. 0 asks only for a decrease."""
    grad_batch_size: int | None = Field(None, ge=2, le=65_536)
    """Batch size of the per-batch gradients behind the unbiased estimate. None = derived
    from the certificate split: the largest size (at most 256) that gives it
    `min_certificate_batches` batches (256 for `teacher`, whose certificate samples are
    fresh)."""
    grad_batches: int | None = Field(None, ge=2, le=100_000)
    """At most this many batches, on the training set (for g_train) and on the certificate
    split (n of the certificate); None = all of each (`teacher`: 16 fresh certificate
    batches)."""
    min_certificate_batches: int = Field(8, ge=8, le=100_000)
    """Fewest certificate batches for the |E g|^2 test to show anything; with fewer it shows
    nothing (`not_shown`). The certificate in nats uses every certificate example instead."""
    line_search_points: int = Field(8, ge=2, le=64)
    """Step sizes tried on validation data for the jumpboard model."""
    base_job: int | None = Field(None, ge=1, le=2**31 - 1)
    """Expand the base network of this finished job (train, expand or grow) instead of
    training one; the service resolves it when the job is submitted (its model, data and train
    sections are taken from that job where this spec leaves them out, and must match).
    `jumpboard run` takes a checkpoint file instead (`--base`)."""

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
    """A growth schedule: insert blocks at given epochs up to a target depth (docs/design.md
    1.6)."""

    at_epochs: list[Annotated[int, Field(ge=1, le=10_000)]] = Field(min_length=1, max_length=256)
    """Epochs after which blocks are inserted (strictly increasing)."""
    policy: Literal["explicit", "best", "stack", "interpolate", "uniform"] = "best"
    """Where to insert: an explicit list, the largest seed-mean U on training batches (`best`),
    or a fixed rule."""
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


class MeasureSpec(StrictModel):
    """What a sweep measures at each grid point besides the risks (expansion/models/measures.py)."""

    projections: int = Field(16, ge=2, le=1024)
    """Random projections per input of the input-sensitivity (Hutchinson) estimate."""
    samples: int = Field(512, ge=16, le=100_000)
    """Test inputs the input sensitivity is averaged over (at most the test set)."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed of the projections and of the choice of inputs."""


# (channels, length) for sequences, (channels, height, width) for images, flat for mlp.
_RAW_SHAPES: dict[str, tuple[int, ...]] = {
    "mnist1d": (1, 40),
    "digits": (1, 8, 8),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
}


NUM_CLASSES: dict[str, int] = {"mnist1d": 10, "digits": 10, "cifar10": 10, "cifar100": 100}


def raw_input_shape(data: DataSpec) -> tuple[int, ...]:
    """Shape of one input sample as the data set stores it (flat samples become 1 channel)."""
    if data.name == "teacher":
        return (1, data.teacher_dim)
    if data.name in USER_DATASETS:
        shape = tuple(data.input_shape or (1,))
        return (1, *shape) if len(shape) == 1 else shape
    return _RAW_SHAPES[data.name]


def input_shape(data: DataSpec, kind: str) -> tuple[int, ...]:
    """Shape of one input sample as the model of `kind` sees it."""
    raw = raw_input_shape(data)
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
    if data.name == "teacher":
        return data.teacher_classes
    if data.name in USER_DATASETS:
        return data.classes or 2
    return NUM_CLASSES[data.name]


def is_image_data(data: DataSpec) -> bool:
    """True for data whose samples are images (channels, height, width)."""
    return data.name in IMAGE_DATASETS or (
        data.name in USER_DATASETS and len(raw_input_shape(data)) == 3
    )
