"""The plan's training memory (analysis/plan_memory.py) against PyTorch's own accounting:
``torch.distributed._tools.MemTracker`` under ``FakeTensorMode`` (no memory is allocated) on
Qwen2-shaped models trained as the recipe trains them: fp32 master weights, bf16 autocast,
gradient checkpointing, the target-only loss, fused AdamW, two micro-batches a step, FSDP2 wrapped
as Accelerate wraps it over a fake process group of N ranks in this one process. Then the same
formula at 32B, the fits it proposes, and run's refusal of a point that cannot fit."""

from __future__ import annotations

import pytest
import torch

from limo_exp.analysis import plan_memory as M
from limo_exp.analysis.plan import Shape
from limo_exp.training.attention import NAME  # registers limo_varlen: causal sdpa, no [L x L] mask
from limo_exp.training.shapes import count_params

H100 = "NVIDIA H100 80GB HBM3"


def qwen2(h, inter, layers, heads, kv_heads, vocab, positions=4096):
    from transformers import Qwen2Config

    return Qwen2Config(
        hidden_size=h,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        vocab_size=vocab,
        max_position_embeddings=positions,
        tie_word_embeddings=False,
    )


def shape_of(config) -> Shape:
    return Shape.of(config, count_params(config), "test")


QWEN_32B = qwen2(5120, 27648, 64, 40, 8, 152064, 32768)  # conf/model/qwen2_5_32b_instruct.yaml


def traced_peak(config, tokens: int, world: int = 1, checkpointing: bool = True) -> float:
    """Peak bytes of rank 0 over an optimizer step of two forwards (AdamW's states made by an
    untraced step before it), as MemTracker counts them under FakeTensorMode."""
    import torch.distributed as dist
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    from transformers import AutoModelForCausalLM

    from limo_exp.training import loss

    mesh = None
    if world > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.testing._internal.distributed.fake_pg import FakeStore

        assert not dist.is_initialized()
        dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world)
        mesh = init_device_mesh("cpu", (world,))  # outside the fake mode: the mesh reads its ranks
    try:
        with FakeTensorMode():
            model = AutoModelForCausalLM.from_config(config, attn_implementation=NAME, dtype=torch.float32)
            if checkpointing:
                model.gradient_checkpointing_enable()
            loss.install(model)
            if mesh is not None:  # Accelerate's FSDP2 units (utils/fsdp_utils.py), no precision casts
                from torch.distributed.fsdp import fully_shard

                for layer in model.model.layers:
                    fully_shard(layer, mesh=mesh)
                fully_shard(model.model.embed_tokens, mesh=mesh)
                fully_shard([model.model.norm, model.lm_head], mesh=mesh, reshard_after_forward=False)
                fully_shard(model, mesh=mesh)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)  # as on a GPU
            ids = torch.randint(0, config.vocab_size, (1, tokens))
            prompt = tokens // 8
            targets = {  # target_positions' output, made here: fake tensors have no nonzero
                "target_index": torch.arange(prompt, tokens - 1),
                "target_ids": torch.randint(0, config.vocab_size, (tokens - 1 - prompt,)),
            }
            for p in model.parameters():  # AdamW's moments made before the traced step, as after step 1
                p.grad = torch.zeros_like(p)
            opt.step()
            opt.zero_grad(set_to_none=True)
            tracker = MemTracker()
            tracker.track_external(model, opt)
            with tracker:
                for _ in range(2):  # two forwards a step: the first's gradients are held in the second
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        out = model(
                            input_ids=ids, labels=ids, use_cache=False, num_items_in_batch=1, **targets
                        )
                    out.loss.backward()
                    del out
                    tracker.reset_mod_stats()  # a module runs once per forward in its stats
                opt.step()
                opt.zero_grad(set_to_none=True)
            return tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def planned(config, tokens: int, world: int = 1, checkpointing: bool = True) -> float:
    return M.need(shape_of(config), M.Recipe(tokens, sharded_over=world, checkpointing=checkpointing)).peak


# ---- the recipe's facts the formula rests on -------------------------------------------------


def test_checkpointed_layer_inputs_are_fp32_under_the_recipe():
    """fp32 master weights + bf16 autocast: the embedding's output is fp32 and each layer adds
    bf16 projections to it, so the residual stream a checkpoint keeps is fp32 (4 bytes, not 2)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(qwen2(64, 128, 3, 4, 2, 256), dtype=torch.float32)
    model.gradient_checkpointing_enable()
    model.train()
    seen = []
    for layer in model.model.layers:
        layer.register_forward_pre_hook(
            lambda m, args, kw: seen.append((args[0] if args else kw["hidden_states"]).dtype),
            with_kwargs=True,
        )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=torch.randint(0, 256, (1, 16)), use_cache=False)
    assert seen == [torch.float32] * 3


def test_an_h100_has_80_gib():
    from limo_exp.hardware import gpu

    assert gpu(H100).memory_bytes == 80 * 2**30  # 85.9 GB, not 80e9 bytes
    assert M.fit(shape_of(qwen2(64, 128, 2, 4, 2, 256)), M.Recipe(512), "H100").have_gb == 85.9


def test_a_layers_coefficients_match_the_tracker():
    """One decoder layer of a shape the coefficients were not fitted on: its recompute's saved
    tensors and its backward's peak, as MemTracker counts them, within 3% of LAYER_SAVED / LAYER_PEAK."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RotaryEmbedding

    config = qwen2(384, 1280, 1, 6, 2, 128)
    config._attn_implementation = NAME
    h, inter, kv, tokens = 384, 1280, 128, 1024
    cpu = torch.device("cpu")
    with FakeTensorMode():
        layer = Qwen2DecoderLayer(config, 0)
        x = torch.randn(1, tokens, h, requires_grad=True)
        positions = torch.arange(tokens)[None]
        tracker = MemTracker()
        tracker.track_external(layer, x)
        with tracker:
            rope = Qwen2RotaryEmbedding(config)(x, positions)
            base = tracker.get_tracker_snapshot("current")[cpu]["Total"]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = layer(x, position_embeddings=rope, attention_mask=None, position_ids=positions)
            saved = tracker.get_tracker_snapshot("current")[cpu]["Total"] - base
            y.backward(torch.randn_like(y))
        peak = tracker.get_tracker_snapshot("peak")[cpu]["Total"] - base
    params = sum(p.numel() for p in layer.parameters())

    def formula(c):
        return tokens * (c[0] * h + c[1] * inter + c[2] * kv) + c[3] * params

    assert saved == pytest.approx(formula(M.LAYER_SAVED), rel=0.03)
    assert peak == pytest.approx(formula(M.LAYER_PEAK), rel=0.03)


# ---- the whole recipe against the tracker ----------------------------------------------------

SMALL = qwen2(256, 1024, 4, 4, 2, 4096)
MID = qwen2(896, 4864, 24, 14, 2, 151936)  # Qwen2.5-0.5B's shape


@pytest.mark.parametrize("world", [pytest.param(1, marks=pytest.mark.slow), 8])  # ~10-15 s of CPU each
def test_a_small_qwen2_within_10_percent_of_the_tracker(world):
    traced, plan = traced_peak(SMALL, 2048, world), planned(SMALL, 2048, world)
    assert plan == pytest.approx(traced, rel=0.10), (plan / 1e6, traced / 1e6)


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 8])
def test_a_mid_size_qwen2_within_10_percent_of_the_tracker(world):
    traced, plan = traced_peak(MID, 4096, world), planned(MID, 4096, world)
    assert plan == pytest.approx(traced, rel=0.10), (plan / 1e9, traced / 1e9)


# ---- 32B: the same formula, and what makes it fit --------------------------------------------


def fit32(gpus: int, tokens: int = 16384, **kw) -> M.Fit:
    return M.fit(shape_of(QWEN_32B), M.Recipe(tokens, sharded_over=gpus, **kw), "H100")


def test_32b_at_16k_does_not_fit_8_h100s_and_fits_16():
    """LIMO's point (Qwen2.5-32B, 16,384-token rows, fp32 master weights, FSDP): 65.5 GB of
    states a GPU over 8, the fp32 layer inputs 21.5 GB, the output layer's working set 18.2 GB."""
    eight = fit32(8)
    assert (eight.need_gb, eight.have_gb, eight.fits) == (105.2, 85.9, False)
    assert eight.detail.startswith("states 65.5 GB, layer inputs 21.5 GB, output layer 18.2 GB")
    assert (fit32(16).need_gb, fit32(16).fits) == (72.4, True)
    assert (fit32(8, offload="all").need_gb, fit32(8, offload="all").fits) == (39.7, True)
    lora = fit32(8, lora_params=M.lora_params(shape_of(QWEN_32B), 16))
    assert (lora.need_gb, lora.fits) == (51.7, True)
    assert (fit32(16, tokens=32768).need_gb, fit32(16, tokens=32768).fits) == (99.6, False)  # s1's rows


def test_the_choices_for_32b_on_8_h100s():
    shape = shape_of(QWEN_32B)
    cands = M.candidates(shape, M.Recipe(16384, sharded_over=8), 8, "fsdp", "H100")
    hours = {
        "2 nodes (16 GPUs)": 10.0,
        "FSDP CPU offload": 15.0,
        "ZeRO-3 CPU offload": 14.0,
        "LoRA rank 16": 7.0,
    }
    choices = M.choose(shape, cands, "H100", lambda cand: hours.get(cand.name))
    got = [(c.name, c.need_gb, c.fits, c.keeps_run_key) for c in choices]
    assert got == [
        ("2 nodes (16 GPUs)", 72.4, True, True),
        ("FSDP CPU offload", 39.7, True, True),
        ("LoRA rank 16", 51.7, True, False),  # cheaper, but another experiment
        ("ZeRO-3 CPU offload", 39.7, True, False),  # train.max_tokens_per_micro_batch is in the run key
        ("train.max_length=1024 (longer examples truncated)", 83.5, False, False),  # the states alone: 65.5
    ]
    assert M.best(choices) == "hydra/launcher=slurm hydra.launcher.nodes=2 hydra.launcher.gpus_per_node=8"
    lines = M.choices_markdown(
        [type("P", (), {"name": "n=817", "memory": type("m", (), {"choices": choices})})]
    )
    assert lines[6] == (
        "| n=817 | 2 nodes (16 GPUs) | `hydra/launcher=slurm hydra.launcher.nodes=2 hydra.launcher.gpus_per_node=8` "
        "| 72 GB | yes | 10.0 |"
    )


# ---- run refuses what cannot fit ---------------------------------------------------------------


def test_run_refuses_a_point_that_cannot_fit_before_any_model_loads(small_cfg, monkeypatch):
    from limo_exp.commands import plan_points, prepare
    from limo_exp.commands import run as run_cmd
    from limo_exp.config import ConfigError

    monkeypatch.setattr(plan_points, "gpu_here", lambda: (H100, 80 * 2**30))

    def reached(*a, **k):
        raise AssertionError("reached the pool")

    monkeypatch.setattr(prepare, "identify", reached)  # the first thing after the checks
    with pytest.raises(ConfigError) as err:
        run_cmd.run(small_cfg("model=qwen2_5_32b_instruct"))
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(
        "training needs ~609 GB a GPU, more than 90% of this NVIDIA H100 80GB HBM3's 86 GB"
    )
    assert "on 1 process(es) (states 524.2 GB" in text  # a 32B model's states on one GPU
    assert "it fits with: none found" in text and text.endswith("plan.check_memory=false to try anyway")
    with pytest.raises(AssertionError, match="reached the pool"):  # told to try: on to the pool
        run_cmd.run(small_cfg("model=qwen2_5_32b_instruct", "plan.check_memory=false"))
    with pytest.raises(AssertionError, match="reached the pool"):  # a model that fits
        run_cmd.run(small_cfg())


def test_the_check_names_the_choices_that_fit(tmp_path):
    from conftest import compose

    from limo_exp.commands import plan_points
    from limo_exp.commands.common import parse
    from limo_exp.config import ConfigError

    c = parse(
        compose(["model=qwen2_5_32b_instruct", "accelerate=fsdp", f"paths.output_root={tmp_path}"])
    ).config
    with pytest.raises(ConfigError) as err:
        plan_points.memory_check(c, 8, H100, 80 * 2**30)
    assert "training needs ~105 GB a GPU" in str(err.value) and "on 8 process(es)" in str(err.value)
    assert (
        "it fits with: 2 nodes (16 GPUs): hydra/launcher=slurm hydra.launcher.nodes=2 hydra.launcher.gpus_per_node=8 "
        "(72 GB); FSDP CPU offload: accelerate=fsdp_offload (40 GB);"
    ) in str(err.value)
    plan_points.memory_check(c, 16, H100, 80 * 2**30)  # two nodes: fits, no error


@pytest.mark.slow  # a 12-point plan: ~15 s of CPU
def test_every_less_is_more_point_fits_8_h100s_under_a_choice(tmp_path, cache_dir):
    from limo_exp.commands import plan as plan_cmd

    paths = [
        f"paths.output_root={tmp_path}",
        f"paths.cache_dir={cache_dir}",
        f"paths.results_dir={tmp_path}/r",
    ]
    plan, _ = plan_cmd.make_plan(["sweep=less_is_more", "plan.device=H100", *paths])
    assert len(plan.points) == 12 and plan.gpus == 8
    for p in plan.points:
        assert p.memory.fits is False and p.memory.need_gb == 105.2
        assert p.memory.choice == "hydra/launcher=slurm hydra.launcher.nodes=2 hydra.launcher.gpus_per_node=8"
        first = p.memory.choices[0]
        assert (first.need_gb, first.fits, first.device_hours is not None) == (72.4, True, True)
        assert {c.name for c in p.memory.choices if c.fits} == {
            "2 nodes (16 GPUs)",
            "FSDP CPU offload",
            "ZeRO-3 CPU offload",
            "LoRA rank 16",
        }
    assert (
        "fits with hydra/launcher=slurm hydra.launcher.nodes=2 hydra.launcher.gpus_per_node=8"
        in plan.summary()
    )
    from limo_exp.analysis.plan import markdown

    md = markdown(plan)
    assert "## Points that do not fit: what makes them fit" in md
    assert (
        "| 2 nodes (16 GPUs) | `hydra/launcher=slurm hydra.launcher.nodes=2 hydra.launcher.gpus_per_node=8` | 72 GB | yes |"
        in md
    )


def test_the_plans_choice_runs_as_written_on_the_gpus_it_priced(tmp_path, cache_dir):
    """The 2-node choice, pasted: the launcher starts gpus_per_node x nodes processes (it passes
    --num_processes itself), and the plan counts the same 16; the launcher's preset alone is 1."""
    from limo_exp.commands import plan as plan_cmd

    paths = [
        f"paths.output_root={tmp_path}",
        f"paths.cache_dir={cache_dir}",
        f"paths.results_dir={tmp_path}/r",
    ]
    point = ["sweep=less_is_more", "plan.device=H100", "data.n_samples=817", "seed=0", *paths]
    choice = ["hydra/launcher=slurm", "hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=8"]
    plan, _ = plan_cmd.make_plan([*point, *choice])
    assert plan.gpus == 16 and len(plan.points) == 1
    assert (plan.points[0].memory.need_gb, plan.points[0].memory.fits) == (72.4, True)
    plan, _ = plan_cmd.make_plan([*point, "hydra/launcher=slurm"])  # the preset's one GPU a node
    assert plan.gpus == 1
