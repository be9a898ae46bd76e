"""The generation sections of the config (``eval/``, ``distill``) and ``report``: the protocol an
evaluation runs, how a teacher writes solutions, the statistics the report draws and what
``limo-exp plan`` assumes; re-exported
by ``limo_exp.config``."""

from __future__ import annotations

from dataclasses import dataclass, field

from limo_exp.typed import ConfigError, Section, one_of

LIMO_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
BACKENDS = ("auto", "hf", "vllm")  # auto: vLLM when CUDA and vllm are present, else hf
HF_DECODINGS = ("auto", "eager", "static", "compiled")  # eval.hf_decoding (limo_exp.evaluation.generation.hf)


@dataclass
class BudgetConfig(Section):
    """``eval.budget``: s1's budget forcing (limo_exp.evaluation.stored_lm.Budget)."""

    think_max: int = (
        8000  # thinking tokens; at the budget the end of thinking and the answer prefix are forced
    )
    think_min: int = 0  # a model ending its thinking earlier gets ``wait`` appended ...
    max_waits: int = 0  # ... up to this many times
    answer_max: int = 1024  # tokens of the answer after the forced prefix
    start_think: str = ""  # text the assistant turn starts with (s1: "<|im_start|>think\\n")
    end_think: str = "</think>"
    answer_prefix: str = "Final Answer:"
    wait: str = "Wait"

    def __post_init__(self):
        if self.think_max < 1 or self.answer_max < 1 or self.think_min < 0 or self.max_waits < 0:
            raise ConfigError(
                "eval.budget: think_max and answer_max must be >= 1, think_min and max_waits >= 0"
            )
        if self.think_min > self.think_max:
            raise ConfigError(f"eval.budget.think_min={self.think_min} is above think_max={self.think_max}")
        if not self.end_think:
            raise ConfigError("eval.budget.end_think must be set: it is the delimiter budget forcing inserts")


@dataclass
class SyntheticConfig(Section):
    n: int = 20  # size of the generated benchmark (limo_synthetic)
    seed: int = 0


@dataclass
class EvalConfig(Section):
    """``eval/``: the evaluation suite and protocol (limo_exp.evaluation.evaluate)."""

    tasks: list[str] = field(default_factory=lambda: ["limo_synthetic"])  # limo_ tasks or groups
    data_dir: str | None = None  # local benchmark files; null: the hub
    limit: int | None = None  # questions per task
    backend: str = "hf"  # auto | hf | vllm
    batch_size: int | str = (
        "auto"  # hf: sequences per generate call; auto: 64 on CUDA (halved on OOM), 1 on CPU
    )
    hf_decoding: str = "auto"  # hf: auto (compiled on CUDA, eager on CPU) | eager | static | compiled
    max_batch_size: int = 128  # hf static/compiled: caps batch_size=auto, fitted to free GPU memory
    vllm_kv_cache_gb: float = 4.0  # vllm on CPU: its KV cache in GiB (VLLM_CPU_KVCACHE_SPACE)
    vllm_gpu_memory_utilization: float = 0.9  # vllm on GPU: the share of GPU memory it takes
    vllm_max_model_len: int | None = None  # vllm: positions per sequence (null: the model's)
    max_gen_toks: int = 32768
    num_samples: int | dict[str, int] = 1  # n samples per question, or per task {limo_aime24: 64, default: 4}
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    pass_k: list[int] = field(default_factory=lambda: [1])
    system_prompt: str | None = None
    instruction: str = LIMO_INSTRUCTION
    gpqa_seed: int = 0  # seed of GPQA's option shuffle
    tensor_parallel_size: int | str = "auto"  # vllm: GPUs an engine spans; auto: from model size, GPU memory
    data_parallel_size: int | str = "auto"  # vllm: engines side by side; auto: GPUs / tensor_parallel_size
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    revision: dict[str, str] | None = None  # benchmark -> hub commit, branch or tag (others: default)
    store: str = "auto"  # response store: auto (<paths.cache_dir>/responses), off, or a folder
    budget: BudgetConfig | None = None  # s1 budget forcing (eval=s1_budget); null: plain generation

    def __post_init__(self):
        one_of("eval.backend", self.backend, BACKENDS)
        one_of("eval.hf_decoding", self.hf_decoding, HF_DECODINGS)
        check_parallel("eval", self)
        if self.max_batch_size < 1:
            raise ConfigError(f"eval.max_batch_size must be >= 1, got {self.max_batch_size}")
        if isinstance(self.batch_size, str):
            one_of("eval.batch_size", self.batch_size, ("auto",))
        elif self.batch_size < 1:
            raise ConfigError(f"eval.batch_size must be >= 1 or auto, got {self.batch_size}")
        counts = self.num_samples.values() if isinstance(self.num_samples, dict) else [self.num_samples]
        if any(n < 1 for n in counts):
            raise ConfigError(f"eval.num_samples must be >= 1 per task, got {self.num_samples}")
        if self.budget and self.budget.think_max + self.budget.answer_max > self.max_gen_toks:
            raise ConfigError(
                f"eval.budget: think_max + answer_max = {self.budget.think_max + self.budget.answer_max} "
                f"exceeds eval.max_gen_toks={self.max_gen_toks}"
            )

    def samples_for(self, task: str) -> int:
        """n for one task: the number, the task's entry, or the ``default`` entry."""
        if isinstance(self.num_samples, int):
            return self.num_samples
        if task in self.num_samples:
            return self.num_samples[task]
        if "default" in self.num_samples:
            return self.num_samples["default"]
        raise ConfigError(f"eval.num_samples has no entry for {task} and no default: {self.num_samples}")


def check_parallel(prefix: str, section) -> None:
    """``tensor_parallel_size`` and ``data_parallel_size``: an int >= 1 or ``auto``
    (limo_exp.evaluation.generation.parallel resolves auto on the machine that runs vLLM)."""
    for key in ("tensor_parallel_size", "data_parallel_size"):
        v = getattr(section, key)
        if isinstance(v, str):
            one_of(f"{prefix}.{key}", v, ("auto",))
        elif isinstance(v, bool) or v < 1:
            raise ConfigError(f"{prefix}.{key} must be an int >= 1 or auto, got {v!r}")


DISTILL_MODES = ("cot", "rationalize")
RATIONALIZE_TEMPLATE = (
    "{problem}\n\nThe correct final answer is {answer}. Explain step by step why it is correct, "
    "and put the final answer within \\boxed{}."
)


@dataclass
class DistillConfig(Section):
    """``distill``: a teacher model (the ``model`` group) writes solutions for a pool's problems
    (``limo-exp distill``; limo_exp.distill). Not part of any run key: a run trained on a distilled
    pool has the pool's content in its key."""

    mode: str = "cot"  # cot: solve it; rationalize: the gold answer is given, explain why
    k: int = 4  # samples per problem
    temperature: float = 0.7  # k > 1 needs sampling (temperature > 0)
    top_p: float = 0.95
    max_gen_toks: int = 2048
    backend: str = "auto"  # auto: vLLM when CUDA and vllm are present, else hf
    batch_size: int | str = "auto"
    hf_decoding: str = "auto"  # as eval.hf_decoding
    max_batch_size: int = 128  # as eval.max_batch_size
    vllm_kv_cache_gb: float = 4.0  # as eval.vllm_kv_cache_gb
    vllm_gpu_memory_utilization: float = 0.9
    vllm_max_model_len: int | None = None
    tensor_parallel_size: int | str = "auto"  # as eval.tensor_parallel_size
    data_parallel_size: int | str = "auto"  # as eval.data_parallel_size
    limit: int | None = None  # the first n problems of the pool
    instruction: str = LIMO_INSTRUCTION  # cot: the user turn is the problem and this instruction
    rationalize_template: str = RATIONALIZE_TEMPLATE  # {problem} and {answer} are replaced
    system_prompt: str | None = None
    max_per_problem: int | None = None  # correct solutions kept per problem (distinct texts); null: all
    store: str = "auto"  # response store: auto (<paths.cache_dir>/responses), off, or a folder
    output: str | None = None  # folder of pool.jsonl; null: <paths.output_root>/distill/<key>

    def __post_init__(self):
        one_of("distill.mode", self.mode, DISTILL_MODES)
        one_of("distill.backend", self.backend, BACKENDS)
        one_of("distill.hf_decoding", self.hf_decoding, HF_DECODINGS)
        check_parallel("distill", self)
        if isinstance(self.batch_size, str):
            one_of("distill.batch_size", self.batch_size, ("auto",))
        for key in (
            "k",
            "max_gen_toks",
            "batch_size",
            "max_batch_size",
            "limit",
            "max_per_problem",
        ):
            v = getattr(self, key)
            if isinstance(v, int) and v < 1:
                raise ConfigError(f"distill.{key} must be >= 1, got {v}")
        if self.k > 1 and self.temperature <= 0:
            raise ConfigError(
                f"distill.k={self.k} with distill.temperature={self.temperature} (greedy) writes one solution "
                "k times: set distill.temperature > 0 or distill.k=1"
            )
        if self.mode == "rationalize":
            missing = [p for p in ("{problem}", "{answer}") if p not in self.rationalize_template]
            if missing:
                raise ConfigError(
                    f"distill.rationalize_template lacks the placeholder(s) {', '.join(missing)}: a "
                    "rationalization is written given the problem and its gold answer"
                )


@dataclass
class ReportConfig(Section):
    """``report``: the statistics of ``limo-exp report`` and ``limo-exp compare``."""

    n_boot: int = 2000  # bootstrap resamples for every interval
    fit_boot: int = 300  # resamples for the interval of a fitted curve's N at 95% of its plateau
    level: float = 0.95  # interval coverage
    seed: int = 0  # of every resampling
    alpha: float = 0.05  # significance level of the paired tests (bold in tables, words in the report)
    reported: list[str] = field(default_factory=list)  # published rows (analysis/published.yaml) to add
    labels: dict[str, str] | None = None  # {id: label} for tables, over conf/'s and the runs' labels
    a: str | None = None  # limo-exp compare A B: a run id, a run key, or param=value[;param=value]
    b: str | None = None

    def __post_init__(self):
        if not 0 < self.level < 1 or not 0 < self.alpha < 1:
            raise ConfigError("report.level and report.alpha must be in (0, 1)")
        if self.n_boot < 100 or self.fit_boot < 0:
            raise ConfigError("report.n_boot must be >= 100 and report.fit_boot >= 0")


@dataclass
class PlanConfig(Section):
    """``plan``: what limo-exp plan assumes where nothing measured says (every figure names its source).
    ``check_memory``: ``run`` on a GPU refuses a point whose training memory (analysis/plan_memory.py)
    exceeds the card, naming the choices that fit; false: try anyway."""

    device: str = "auto"  # H100 | H200 | A100 | L40S (hardware.GPUS) | cpu; auto: this machine's
    gpus: int | str = "auto"  # per point; auto: the accelerate topology's processes, else 1
    mfu: float | None = None  # training: this share of the bf16 peak; null: the GPU bench, else calibrated
    bandwidth_use: float = 0.6  # generation, with no measured throughput: this share of HBM bandwidth
    max_gpu_hours: float | None = None  # a sweep over this budget is refused before launch
    baseline_accuracy: float | None = None  # power: the accuracy to detect a gain over; null: from the store
    assumed_accuracy: float = 0.5  # ... when the store has no earlier run of the model (0.5: widest)
    power: float = 0.8
    alpha: float = 0.05
    wanted_difference: float = 0.05  # comparisons that cannot resolve this gain get a cheapest fix
    check_memory: bool = True  # run refuses a point whose training cannot fit the GPU, before any model loads

    def __post_init__(self):
        if isinstance(self.gpus, str):
            one_of("plan.gpus", self.gpus, ("auto",))
        for key in ("mfu", "bandwidth_use", "power", "alpha", "wanted_difference", "assumed_accuracy"):
            if getattr(self, key) is not None and not 0 < getattr(self, key) <= 1:
                raise ConfigError(f"plan.{key}={getattr(self, key)}: expected a share in (0, 1]")


# -- the sections of the later ablation axes (issue 36): verification, trace length ------------

VERIFY_MODES = ("kept", "dropped", "inverted")  # curation.verify.mode: the structure-vs-content axis


@dataclass(frozen=True)
class VerifyConfig(Section):
    """``curation.verify``: grade every solution's final answer against the gold answer."""

    enabled: bool = True  # false: the same as mode=dropped (the older spelling)
    workers: int = 1  # processes for grading (math-verify is the slow stage)
    mode: str = "kept"  # kept: right answers only | dropped: no check | inverted: wrong answers only

    def __post_init__(self):
        one_of("curation.verify.mode", self.mode, VERIFY_MODES)
        if not self.enabled and self.mode == "inverted":
            raise ConfigError(
                "curation.verify.mode=inverted grades answers: set curation.verify.enabled=true"
            )

    @property
    def effective(self) -> str:
        """What the verify stage does: kept, dropped or inverted."""
        return self.mode if self.enabled else "dropped"


@dataclass
class TierConfig(Section):
    """``quality/``: which solutions are trained on: a kind, a level L1..L5, "L4+" or "L2-L4"; and
    how much of each (``truncate``, the length band in words: ``limo_exp.selection.traces``)."""

    name: str
    tier: str
    label: str | None = None  # tables and figures: "answer only"; null: the name (not in the run key)
    truncate: float | None = None  # keep the first fraction of each solution, cut where a step ends
    min_words: int | None = None  # keep solutions of at least / at most this many words (before truncate)
    max_words: int | None = None

    def __post_init__(self):
        if self.truncate is not None and not 0 < self.truncate <= 1:
            raise ConfigError(f"quality.truncate={self.truncate}: expected a fraction in (0, 1]")
        lo, hi = self.min_words, self.max_words
        if (lo is not None and lo < 0) or (hi is not None and hi < 1) or (lo and hi and lo > hi):
            raise ConfigError(f"quality.min_words={lo}, max_words={hi}: expected 0 <= min <= max, max >= 1")
