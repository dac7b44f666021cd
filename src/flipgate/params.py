"""Typed params: one frozen model per params.yaml section (SECTIONS), unknown keys refused.

Reading params.yaml and validating it against these models is `flipgate.params_file` (`check_all`,
`load_section`, `load_seeds`); stages get the sections validated once and unpack them into plain
arguments; the library never sees these objects' parent file.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictInt, field_validator,
                      model_validator)

from flipgate.errors import FlipgateError

EMBEDDED = "embedded"


def _alphas(v: list[float]) -> list[float]:
    if not v or any(a < 0 or a > 1 for a in v):
        raise ValueError("alphas must be a non-empty list of numbers in [0, 1]")
    return sorted(set(v))


Alphas = Annotated[list[float], AfterValidator(_alphas)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Base(Section):
    model: str = EMBEDDED  # "embedded" (all-MiniLM-L6-v2 from PyPI), an HF hub id or a local folder
    max_length: int = Field(128, gt=0)
    eval_batch_size: int = Field(64, gt=0)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    # A model upgrade (either set): old is another architecture than new. old starts from `old_model`
    # (null: `model`) cut to its first `old_layers` transformer layers (null: all); new starts from `model`
    # instead of old's weights, and the methods that need one architecture (BCWI, prior WD, EWC, Mixout) skip.
    old_model: str | None = None
    old_layers: int | None = Field(None, gt=0)

    @property
    def upgrade(self) -> bool:
        return self.old_model is not None or self.old_layers is not None

    @property
    def old_init(self) -> str:
        return self.old_model or self.model

    @property
    def no_weight_mixing(self) -> str | None:
        """Why the methods that mix or compare old's and new's weights skip (None: they run)."""
        if not self.upgrade:
            return None
        return ("a model upgrade (base.old_model / base.old_layers set): old and new have different "
                "architectures, so their weights cannot be mixed or compared")


class Files(Section):
    old: str = Field(min_length=1)  # D_old
    new: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)  # D_new: files and/or folders of jsonl/csv/parquet
    dev: str = Field(min_length=1)
    regression: str = Field(min_length=1)

    @field_validator("new", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v


class HFSource(Section):
    dataset: str
    config: str | None = None
    split: str = "train"


class Data(Section):
    source: Literal["embedded", "files", "hf"] = EMBEDDED
    text_column: str = "text"
    label_column: str = "label"
    id_column: str | None = "id"  # None or absent column: ids are derived from file and row
    files: Files | None = None
    hf: HFSource | None = None
    scenario: Literal["data_update", "add_classes"] = "data_update"


class Update(Section):
    """Sizes for pooled sources (embedded, hf); ignored for `files`, whose files are the splits."""

    seed: int = Field(0, ge=0, lt=2**32)  # the split's seed, apart from the training `seeds`: every seed's run shares one split
    n_old: int = Field(1000, gt=0)
    n_new: int = Field(500, gt=0)
    n_dev: int = Field(1000, gt=0)
    n_regression: int = Field(2000, gt=0)
    new_classes: list[str] = Field(default_factory=list)  # add_classes: labels held out of D_old


AUTO = "auto"
Epochs = Literal["auto"] | Annotated[StrictInt, Field(gt=0)]


class Schedule(Section):
    """How long a model trains. `epochs: auto` (default): up to `max_epochs`, keeping the epoch with the
    best dev accuracy and stopping after `patience` epochs without improvement; `epochs: N`: exactly N
    epochs, the last one kept. The learning rate decays linearly over max_epochs (or N) either way."""

    epochs: Epochs = AUTO
    max_epochs: int = Field(20, gt=0)
    patience: int = Field(3, gt=0)
    lr: float = Field(1e-4, gt=0)
    head_lr: float | None = Field(None, gt=0)  # a freshly initialised head's lr; None: lr
    batch_size: int = Field(32, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)


class Train(Schedule):
    # >1: stages/train.py re-runs itself under `accelerate launch` with this many processes (DDP on
    # this machine's GPUs, gloo on CPU); batch_size stays the global batch, batch_size / processes each.
    processes: int = Field(1, ge=1)


Objective = Literal["budget", "tolerance"]


class Choosing(Section):
    """How a knob or a candidate is chosen on dev (see flipgate.mitigation.selection_rule):
    `budget`: the most accurate option whose dev NFR, with its one-sided upper bound at `confidence`,
    is within the gate's nfr_budget (and whose accuracy gain over old is >= the gate's min_gain);
    `tolerance`: the lowest dev NFR among options within `tolerance` accuracy points of the reference."""

    objective: Objective = "budget"
    confidence: float = Field(0.9, ge=0.5, lt=1)  # budget: level of the NFR's upper bound (0.5: the point)
    tolerance: float | Literal["ci"] = 0.5  # tolerance: accuracy points below the reference, or `ci`
    ci_level: float = Field(0.95, gt=0, lt=1)  # tolerance `ci`: level of the reference's interval


class Bcwi(Choosing):
    alphas: Alphas = Field(default_factory=lambda: [round(i / 10, 1) for i in range(11)])
    variants: list[Literal["plain", "fisher", "soup"]] = Field(default_factory=lambda: ["plain"])
    fisher_max_examples: int = Field(1000, gt=0)
    soup_k: int = Field(3, ge=2)


class Validate(Section):
    """Data checks on the update's splits (Great Expectations); drift only warns."""

    min_chars: int = Field(1, ge=0)  # text length bounds, in characters
    max_chars: int = Field(2000, gt=0)
    drift_threshold: float = Field(0.2, ge=0, le=1)  # total variation distance of D_old vs D_new labels
    leakage: Literal["fail", "warn"] = "fail"  # "warn" for fixed benchmark splits that share a few texts

    @field_validator("max_chars")
    @classmethod
    def _bounds_ordered(cls, v: int, info) -> int:
        if v < info.data.get("min_chars", 0):
            raise ValueError("max_chars must be >= min_chars")
        return v


class Gate(Section):
    """Promotion gate policy (rates are fractions: 0.01 = 1%)."""

    nfr_budget: float = Field(0.01, ge=0, le=1)
    upper_bound: bool = False  # also require the Clopper-Pearson upper bound of the NFR <= budget
    ci_level: float = Field(0.95, gt=0, lt=1)
    min_gain: float = Field(0.0, ge=-1, le=1)  # candidate acc - baseline acc; negative allows a loss
    per_class_budget: float | None = Field(None, ge=0, le=1)
    golden_ids_file: str | None = None  # one id per line: examples that must never flip


class Tracking(Section):
    """MLflow: uri None = MLFLOW_TRACKING_URI if set, else sqlite:///mlflow.db in the project."""

    enabled: bool = True  # false: stages log nothing to MLflow (promote still needs the registry)
    uri: str | None = None
    experiment: str = "flipgate"


class Promote(Section):
    """Model Registry promotion; the champion alias moves only on a gate pass."""

    registered_name: str = Field("flipgate-classifier", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    require_champion_baseline: bool = True  # a pass against a non-champion baseline does not promote


class Select(Choosing):
    """Which model to gate, chosen on dev by `objective` (as bcwi); `reference` is the tolerance rule's
    accuracy reference. With no admissible candidate, the safest one (lowest dev NFR bound) is gated and
    marked, so the gate rejects it and the champion stays."""

    candidates: list[str] = Field(default_factory=lambda: ["new", "bcwi", "gated_fusion"])
    reference: str = "target"


class GatedFusion(Schedule):
    """Gated Fusion (stage `gated_fusion`); paper grids in appendix A.3. Rates are fractions. The schedule
    keys (epochs, max_epochs, ...) are new's inside Gated Fusion; paper: new alone, then 1 joint epoch."""

    variant: Literal["paper", "heldout"] = "heldout"
    init: str = "old"  # new starts from: "old" (data update), "base" (base.model) or a model id/folder (upgrade)
    lr2: float = Field(3e-5, gt=0)  # paper: the joint epoch's learning rate (grid 5e-7 ... 3e-5)
    drop_gate: float = Field(0.5, ge=0, lt=1)  # paper: share of joint steps that train new alone (0.4 ... 0.8)
    temperature: float = Field(1.0, gt=0)  # T on old's logits (1.0 ... 1.6)
    gate_hidden: int = Field(64, gt=0)
    gate_dropout: float = Field(0.1, ge=0, lt=1)
    gate_inputs: Literal["embedding", "signals", "both"] | None = None  # None: paper embedding, heldout both
    gate_lr: float | None = Field(None, gt=0)  # None: lr2 (paper), 1e-3 (heldout)
    gate_epochs: int = Field(30, gt=0)  # heldout: passes over the gate split
    heldout_fraction: float = Field(0.2, gt=0, lt=1)  # heldout: share of D_updated kept for the gate
    refit: bool = False  # heldout: retrain new on all of D_updated after fitting the gate
    cache_fractions: list[float] = Field(default_factory=lambda: [0.5, 0.75])

    @field_validator("cache_fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(f <= 0 or f >= 1 for f in v):
            raise ValueError("cache_fractions must lie strictly between 0 and 1 (0% and 100% are always reported)")
        return sorted(set(v))


class Ensembles(Choosing):
    """Old-new ensembles (stage `ensembles`): alpha is the weight on NEW, chosen on dev (as bcwi)."""

    alphas: Alphas = Field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9])


def _positive(v: list[float]) -> list[float]:
    if not v or any(x <= 0 for x in v):
        raise ValueError("a non-empty list of numbers > 0")
    return sorted(set(v))


def _mixout_p(v: list[float]) -> list[float]:
    if not v or any(x <= 0 or x >= 1 for x in v):
        raise ValueError("a non-empty list of probabilities strictly between 0 and 1")
    return sorted(set(v))


Positives = Annotated[list[float], AfterValidator(_positive)]


class DistillGrid(Section):
    """A distillation baseline's grid (every lambda with every T: one training of new each)."""

    enabled: bool = False
    lambdas: Positives = Field(default_factory=lambda: [1.0])  # paper grid (Gated Fusion A.2): 0.1, 1, 10
    temperatures: Positives = Field(default_factory=lambda: [1.0])  # paper grid: 0.5, 1, 2


class StrengthGrid(Section):
    """Prior weight decay's or EWC's strengths s (one training of new each)."""

    enabled: bool = False
    strengths: Positives = Field(default_factory=lambda: [0.1])


class EwcGrid(StrengthGrid):
    fisher_max_examples: int = Field(1000, gt=0)  # D_old examples for old's Fisher (when the fisher stage has none)


class MixoutGrid(Section):
    enabled: bool = False
    p: Annotated[list[float], AfterValidator(_mixout_p)] = Field(default_factory=lambda: [0.5])


class BcwiStack(Section):
    """Mitigations that stack: the chosen model of baseline `over`, interpolated with old (BCWI) at `alphas`,
    alpha chosen on dev by the baselines' rule; written as predictions/bcwi_stacked (no training)."""

    enabled: bool = False
    over: Literal["kd", "focal_distill", "dynamic_distill", "prior_wd", "ewc", "mixout"] = "focal_distill"
    alphas: Alphas = Field(default_factory=lambda: [round(i / 10, 1) for i in range(10)])


class Baselines(Choosing):
    """The seeds' baselines (stage `baselines`): new trained from old with an extra loss or regulariser, on
    train_new's schedule; each grid point is one more training of new, chosen on dev (as bcwi)."""

    kd: DistillGrid = Field(default_factory=DistillGrid)
    focal_distill: DistillGrid = Field(default_factory=DistillGrid)
    dynamic_distill: DistillGrid = Field(default_factory=DistillGrid)
    prior_wd: StrengthGrid = Field(default_factory=StrengthGrid)
    ewc: EwcGrid = Field(default_factory=EwcGrid)
    mixout: MixoutGrid = Field(default_factory=MixoutGrid)
    bcwi_stack: BcwiStack = Field(default_factory=BcwiStack)

    @model_validator(mode="after")
    def _stack_over_enabled(self) -> Baselines:
        if self.bcwi_stack.enabled and not getattr(self, self.bcwi_stack.over).enabled:
            raise ValueError(f"bcwi_stack.over is {self.bcwi_stack.over}, which is not enabled: set "
                             f"baselines.{self.bcwi_stack.over}.enabled: true (the model it interpolates with old)")
        return self

    def grid(self, method: str) -> list[dict]:
        """The method's grid points as knob dicts (empty when it is not enabled)."""
        section = getattr(self, method)
        if not section.enabled:
            return []
        if isinstance(section, DistillGrid):
            return [{"lambda": lam, "T": t} for lam in section.lambdas for t in section.temperatures]
        if isinstance(section, MixoutGrid):
            return [{"p": p} for p in section.p]
        return [{"strength": s} for s in section.strengths]


class NewEnsemble(Section):
    """The new-model ensemble over the first k of `seeds` (stage `new_ensemble`)."""

    enabled: bool = False
    k: int = Field(3, ge=2)


class Old(Section):
    """Where the old model comes from: trained here on D_old, or the registry's champion (a data update)."""

    source: Literal["train", "registry"] = "train"


SECTIONS: dict[str, type[Section]] = {
    "base": Base,
    "data": Data,
    "update": Update,
    "old": Old,
    "train_old": Train,
    "train_target": Train,
    "train_new": Train,
    "bcwi": Bcwi,
    "gated_fusion": GatedFusion,
    "ensembles": Ensembles,
    "baselines": Baselines,
    "new_ensemble": NewEnsemble,
    "select": Select,
    "validate": Validate,
    "gate": Gate,
    "tracking": Tracking,
    "promote": Promote,
}
