"""Training memory a GPU needs under the project's recipe, for ``limo-exp plan`` and ``run``'s check.

What the recipe holds (training/recipe.py, training/loss.py, conf/accelerate/fsdp.yaml), per GPU:

- states: the master weights (train.master_dtype: fp32, 4 B/param), their gradients (fp32) and
  AdamW's two fp32 moments (adamw_kahan: + a bf16 compensation); LoRA: the frozen weights plus
  the adapters' states. FSDP / ZeRO-3 shard them over the processes; offload puts them in host
  memory (``host_gb``).
- the checkpointed layer inputs: one per decoder layer, in fp32 under fp32 master weights and
  bf16 autocast (the residual stream stays fp32: fp32 embedding + bf16 projections = fp32);
  without checkpointing (or for train.checkpoint_skip_layers) every saved tensor of the layer.
- one decoder layer's recompute and backward, and (no FSDP) autocast's cache of the bf16 weight
  copies, which checkpointing keeps until the forward ends: per-token coefficients counted by
  PyTorch's MemTracker on a Qwen2 layer under bf16 autocast (tests/test_plan_memory.py pins them).
- FSDP's buffers: ~2 decoder layers' gathered weights (the one running and the one prefetched)
  and a reduce-scatter copy of one layer's gradients; the output layer stays gathered from the
  end of the forward through its backward (Accelerate's tail unit).
- the output layer under the target-only loss (chunked, training/loss.py): its bf16 copy, the fp32
  weight gradient computed in the forward and its bf16/fp32 temporaries, chunk x vocab logits;
  under loss_impl=hf, full logits (tokens x vocab) in bf16 and fp32.

The peak is the larger of two moments: the end of the forward (the loss) and the first layer
backward; both on top of the states and the checkpointed inputs. Validated against PyTorch's
trackers in tests/test_plan_memory.py (within 10% on the traced shapes). GPU memory is what the
card has (an H100: 80 GiB = 85.9 GB); a point fits at up to ``USABLE`` of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

USABLE = 0.9  # the allocator's fragmentation, the CUDA context and NCCL's buffers take the rest
GB = 1e9
# what the cards have (nominal GiB as torch reports them; hardware.GPUS' figures otherwise)
# bytes per token (x hidden, x intermediate, x key/value dim) and per layer parameter, traced by
# MemTracker on a Qwen2 decoder layer (fp32 weights and input, bf16 autocast, causal attention
# without a mask: limo_varlen's one-document path):
LAYER_SAVED = (30, 8, 4, 2)  # its forward's saved tensors and output, and its bf16 weight copies
LAYER_PEAK = (34.5, 12, 3.5, 2.6)  # its recompute + backward at their peak, the incoming gradient in


@dataclass(frozen=True)
class Recipe:
    """What the memory depends on in a point's config."""

    tokens: int  # of one forward on one GPU (train.max_tokens_per_micro_batch, else batch x length)
    master_bytes: int = 4  # train.master_dtype: 4 float32, 2 bfloat16
    optimizer: str = "adamw"
    lora_params: int = 0  # trainable adapter parameters; 0: full fine-tuning
    sharded_over: int = 1  # FSDP / ZeRO-3 processes (1: every GPU holds everything)
    offload: str = "none"  # none | optimizer (AdamW's states in host memory) | all (+ weights, gradients)
    checkpointing: bool = True
    skip_layers: int = 0  # train.checkpoint_skip_layers
    loss: str = "target_only"  # target_only | hf
    autocast: bool = True  # bf16 compute (a GPU)
    chunk: int = 1024  # the target-only loss's rows a chunk


@dataclass
class Need:
    parts: dict[str, float]  # bytes per GPU, by what holds them
    peak: float  # bytes per GPU at the peak
    host: float  # bytes of host memory per GPU (offload)


def lora_params(shape, r: int) -> int:
    """Adapter parameters of rank ``r`` on every linear layer of the decoder (all-linear)."""
    q = shape.hidden  # attention heads x head dim (= hidden for Qwen2 / Llama)
    per_layer = (
        r * (shape.hidden + q)  # q
        + 2 * r * (shape.hidden + shape.kv_dim)  # k, v
        + r * (q + shape.hidden)  # o
        + 3 * r * (shape.hidden + shape.intermediate)  # gate, up, down
    )
    return shape.layers * per_layer


def layer_params(shape) -> float:
    """Parameters of one decoder layer: the model's less its embedding(s) and final norm; the
    output layer tied to the embedding or not, whichever a layer's own count is nearer to."""
    h = shape.hidden
    own = 2 * h * h + 2 * h * shape.kv_dim + 3 * h * shape.intermediate + 2 * h  # no biases
    rest = [(shape.params - shape.vocab * h * k - h) / shape.layers for k in (1, 2)]
    return min(rest, key=lambda x: abs(x - own))


def need(shape, r: Recipe) -> Need:
    """Bytes per GPU at the training peak of ``shape`` under recipe ``r``, by part."""
    h, inter, kv, vocab, layers = shape.hidden, shape.intermediate, shape.kv_dim, shape.vocab, shape.layers
    t, m, n = r.tokens, r.master_bytes, max(r.sharded_over, 1)
    p_layer = layer_params(shape)
    kahan = 2 if r.optimizer == "adamw_kahan" else 0  # its bf16 compensation buffer
    if r.lora_params:  # frozen weights; the adapters' fp32 weights, gradients and moments
        states = (shape.params * m + r.lora_params * 16) / n
    else:  # weights and gradients in the master dtype, AdamW's two fp32 moments
        states = shape.params * (2 * m + 8 + kahan) / n
    host = 0.0
    if r.offload == "all":
        host, states = states, 0.0
    elif r.offload == "optimizer":
        host = (r.lora_params or shape.params) * (8 + kahan) / n
        states -= host
    fsdp = n > 1 or r.offload == "all"  # gathered unit by unit
    stream = m  # the residual stream: fp32 under fp32 weights (bf16 projections added to it)
    checkpointed = layers - r.skip_layers if r.checkpointing else 0
    kept_full = layers - checkpointed
    saved = t * (LAYER_SAVED[0] * h + LAYER_SAVED[1] * inter + LAYER_SAVED[2] * kv) + LAYER_SAVED[3] * p_layer
    inputs = checkpointed * t * h * stream + kept_full * saved
    # autocast caches a bf16 copy of each weight it casts until the forward ends; checkpointing
    # frees what the layers saved, not the cache. Under FSDP the gathered weights are not cached.
    cache = 2 * checkpointed * p_layer if (r.autocast and not fsdp and checkpointed) else 0.0
    vh, c = vocab * h, min(r.chunk, t)
    grad_w = 0 if r.lora_params else 1
    if r.loss == "hf":  # full logits: bf16, their fp32 copy and its gradient
        loss = t * vocab * (2 + 4 + 4)
    else:  # bf16 weight, fp32 weight gradient + a chunk's bf16 and fp32 copies, the logits, grad of h
        loss = 2 * vh + grad_w * 10 * vh + 6 * c * vocab + 8 * t * h
    # the output layer's unit, gathered from the forward's end to its backward: traced at two copies
    tail = 2 * m * vh if fsdp else 0.0
    final_norm = 3 * 4 * t * h  # the last layer's output, the norm's saved tensor and its output
    at_loss = loss + tail + final_norm + cache
    layer = t * (LAYER_PEAK[0] * h + LAYER_PEAK[1] * inter + LAYER_PEAK[2] * kv) + LAYER_PEAK[3] * p_layer
    # FSDP: the running and the prefetched layer gathered, one layer's gradients reduce-scattered
    buffers = (2 * m * p_layer + (0 if r.lora_params else 4 * p_layer)) if fsdp else 0.0
    at_backward = (layer if checkpointed else 0.0) + buffers
    parts = {
        "states": states,
        "layer inputs" if checkpointed else "activations": inputs,
        "output layer" if at_loss >= at_backward else "layer backward": max(at_loss, at_backward),
    }
    return Need(parts, sum(parts.values()), host)


@dataclass
class Choice:
    name: str
    overrides: list[str]
    need_gb: float
    fits: bool
    device_hours: float | None
    keeps_run_key: bool  # the same experiment (topology only), or a changed one (length, LoRA)

    def text(self) -> str:
        hours = "unknown" if self.device_hours is None else f"{self.device_hours:,.1f}"
        return f"{self.name} ({' '.join(self.overrides)}): {self.need_gb:,.0f} GB, {hours} device-hours"


@dataclass
class Fit:
    need_gb: float
    have_gb: float | None
    fits: bool | None
    detail: str
    choices: list[Choice] = field(default_factory=list)


def fit(shape, r: Recipe, device: str, have_bytes: float | None = None) -> Fit:
    """``need`` against ``device``'s memory (``have_bytes``: what torch says the card has), with
    the parts named."""
    from limo_exp.hardware import gpu

    got = need(shape, r)
    spec = gpu(device)
    gathered = f"/ {r.sharded_over}" if r.sharded_over > 1 else "per GPU"
    detail = ", ".join(f"{k} {v / GB:,.1f} GB" for k, v in got.parts.items())
    detail += f" ({r.tokens:,} tokens a forward; states {gathered}"
    detail += f"; host memory {got.host / GB:,.0f} GB a GPU" if got.host else ""
    detail += ")"
    if spec is None and not have_bytes:
        return Fit(round(got.peak / GB, 1), None, None, detail + f"; no data sheet for {device}")
    have = have_bytes or spec.memory_bytes
    return Fit(round(got.peak / GB, 1), round(have / GB, 1), got.peak <= USABLE * have, detail)


# ---- what makes a point fit ------------------------------------------------------------------

LENGTHS = (12288, 8192, 6144, 4096, 2048, 1024)  # shorter train.max_length tried, longest first
MAX_NODES = 4


@dataclass(frozen=True)
class Candidate:
    """One way to fit: its overrides, the recipe and GPUs it runs with, how it is priced."""

    name: str
    overrides: tuple[str, ...]
    recipe: Recipe
    gpus: int
    keeps_run_key: bool
    offload: str = "none"  # plan_time's offload input
    max_length: int | None = None  # a shorter train.max_length (recounted)
    lora: bool = False


def candidates(
    shape, r: Recipe, gpus: int, topology: str, device: str, per_node: int | None = None
) -> list[Candidate]:
    """The fits ``choices`` prices, from the point's recipe on ``gpus`` GPUs of ``device`` under
    ``topology`` (fsdp | deepspeed | ddp | single; ``per_node`` GPUs a node): more nodes of the same
    GPUs (sharded topologies: the smallest count up to ``MAX_NODES`` that fits), FSDP or ZeRO-3 CPU offload,
    the longest shorter train.max_length that fits, LoRA (train=lora, rank 16)."""
    from dataclasses import replace

    out, per_node = [], per_node or gpus
    if topology in ("fsdp", "deepspeed") and gpus > 1:
        for nodes in range(gpus // per_node + 1, MAX_NODES + 1):
            wide = replace(r, sharded_over=per_node * nodes)
            over = (
                "hydra/launcher=slurm",
                f"hydra.launcher.nodes={nodes}",
                f"hydra.launcher.gpus_per_node={per_node}",
            )
            out.append(
                Candidate(f"{nodes} nodes ({per_node * nodes} GPUs)", over, wide, per_node * nodes, True)
            )
            if _fits(shape, wide, device) or nodes == MAX_NODES:
                break
            out.pop()
    if topology in ("single", "ddp"):  # every GPU holds everything: shard it over a node
        fsdp = replace(r, sharded_over=max(gpus, 8))
        out.append(
            Candidate(f"FSDP over {max(gpus, 8)} GPUs", ("accelerate=fsdp",), fsdp, max(gpus, 8), True)
        )
    if gpus > 1 and topology != "single":
        shard = replace(r, sharded_over=gpus, offload="all")
        out.append(Candidate("FSDP CPU offload", ("accelerate=fsdp_offload",), shard, gpus, True, "cpu"))
        # DeepSpeed packs no rows to a token budget: batch_size sequences of max_length a forward
        ds = ("accelerate=deepspeed_zero3_offload", "train.max_tokens_per_micro_batch=null")
        out.append(Candidate("ZeRO-3 CPU offload", ds, shard, gpus, False, "cpu"))  # the budget is keyed
    shorter = [n for n in LENGTHS if n < r.tokens]
    for length in shorter:
        short = replace(r, tokens=length)
        over = (f"train.max_length={length}", f"train.max_tokens_per_micro_batch={length}")
        if _fits(shape, short, device) or length == shorter[-1]:
            name = f"train.max_length={length} (longer examples truncated)"
            out.append(Candidate(name, over, short, gpus, False, max_length=length))
            break
    if not r.lora_params:
        lora = replace(r, lora_params=lora_params(shape, 16))
        out.append(Candidate("LoRA rank 16", ("train=lora",), lora, gpus, False, lora=True))
    return out


def _fits(shape, r: Recipe, device: str) -> bool:
    return bool(fit(shape, r, device).fits)


def choose(shape, cands: list[Candidate], device: str, price) -> list[Choice]:
    """Each candidate's memory and, where it fits, device-hours (``price(candidate)``), cheapest
    first: those that fit and keep the run key (the same experiment), then those that fit and
    change it, then those that do not fit (unpriced)."""
    out = []
    for cand in cands:
        f = fit(shape, cand.recipe, device)
        hours = price(cand) if f.fits else None
        out.append(
            Choice(cand.name, list(cand.overrides), f.need_gb, bool(f.fits), hours, cand.keeps_run_key)
        )
    return sorted(out, key=lambda c: (not c.fits, not c.keeps_run_key, _hours(c)))


def _hours(c: Choice) -> float:
    return float("inf") if c.device_hours is None else c.device_hours


def best(choices: list[Choice]) -> str | None:
    """The overrides of the first choice that fits (``choose``'s order), or None."""
    first = next((c for c in choices if c.fits), None)
    return None if first is None else " ".join(first.overrides)


def choices_markdown(points) -> list[str]:
    """plan.md's table of what makes each point that does not fit fit, with its cost."""
    rows = [(p.name, c) for p in points if p.memory is not None for c in getattr(p.memory, "choices", [])]
    if not rows:
        return []
    lines = [
        "## Points that do not fit: what makes them fit",
        "",
        "Choices that keep the run key (the same experiment) come first; a shorter length or LoRA "
        "changes the experiment. The first that fits is the plan's choice.",
        "",
        "| point | choice | overrides | memory a GPU | fits | training device-hours |",
        "|---|---|---|---:|---|---:|",
    ]
    for name, c in rows:
        c = c if isinstance(c, Choice) else Choice(**c)
        hours = "unknown" if c.device_hours is None else f"{c.device_hours:,.1f}"
        lines.append(
            f"| {name} | {c.name} | `{' '.join(c.overrides)}` | {c.need_gb:,.0f} GB | "
            f"{'yes' if c.fits else 'no'} | {hours} |"
        )
    return lines + [""]
