"""The training loop: pinned loss after two steps, packing and accumulation equivalences."""

from __future__ import annotations

import pytest
import torch
from conftest import torchrun

from limo_exp.config import LoraConfig, TrainConfig
from limo_exp.data.records import Example
from limo_exp.data.synthetic import make_pool
from limo_exp.training.loop import train
from limo_exp.training.sft_data import IGNORE


def _examples(n=8):
    return [Example(r.id, r.problem, r.solutions[1].text, r.answer, "short") for r in make_pool(n, seed=0)]


def _run(tiny_model, **kw):
    from accelerate import Accelerator

    from limo_exp.training.models import load

    torch.manual_seed(0)
    model, tok = load(str(tiny_model), attn=kw.pop("attn", "auto"))
    cfg = TrainConfig(**{"lr": 1e-3, "max_steps": 2, "instruction": "Reason."} | kw)
    return train(model, tok, _examples(), cfg, Accelerator(cpu=True)), model


def test_loss_after_two_steps_is_pinned(tiny_model):
    res, _ = _run(tiny_model, batch_size=4, grad_accum=1)
    assert res.steps == 2 and res.target_tokens > 0
    # random init over a 512-token vocabulary: loss starts near ln(512) = 6.24 and moves down
    assert res.losses == pytest.approx([6.27866, 6.12392], abs=1e-4)


def test_packing_gives_the_same_loss(tiny_model):
    a, _ = _run(tiny_model, batch_size=4, grad_accum=1)
    b, _ = _run(tiny_model, batch_size=4, grad_accum=1, packing=True)
    assert b.losses == pytest.approx(a.losses, rel=1e-5)


def test_grad_accumulation_matches_one_big_batch(tiny_model):
    a, ma = _run(tiny_model, batch_size=4, grad_accum=1)
    b, mb = _run(tiny_model, batch_size=1, grad_accum=4)
    assert b.losses == pytest.approx(a.losses, rel=1e-4)
    for pa, pb in zip(ma.parameters(), mb.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


def test_two_process_gloo_ddp_matches_single_process(tiny_model, tmp_path):
    """Two CPU processes over gloo (torchrun; Accelerate reads the env): same losses as one process
    with the same global batch."""
    import json
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "ddp.json"
    cmd = [
        *torchrun(2, 29533),
        str(repo / "tests/ddp_worker.py"),
        str(tiny_model),
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads(out.read_text())
    single, _ = _run(tiny_model, batch_size=4, grad_accum=1)
    assert ddp["world"] == 2
    assert ddp["losses"] == pytest.approx(single.losses, rel=1e-4)


def test_lora_trains_adapters_only_and_saves_a_plain_model(tiny_model, tmp_path):
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM

    from limo_exp.training import lora
    from limo_exp.training.loop import save
    from limo_exp.training.models import load

    torch.manual_seed(0)
    model, tok = load(str(tiny_model))
    base = {k: v.clone() for k, v in model.state_dict().items()}
    model = lora.wrap(model, LoraConfig(r=4, alpha=8, dropout=0.0, target_modules="all-linear"))
    assert 0 < lora.trainable_fraction(model) < 0.2
    acc = Accelerator(cpu=True)
    res = train(
        model, tok, _examples(), TrainConfig(lr=1e-2, max_steps=2, batch_size=4, instruction="Reason."), acc
    )
    assert res.losses[1] < res.losses[0]
    save(model, tok, str(tmp_path / "ckpt"), acc)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    state = plain.state_dict()
    assert not any("lora" in k for k in state)  # adapters merged into a plain checkpoint
    assert not torch.equal(
        state["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"]
    )
    torch.testing.assert_close(
        state["model.embed_tokens.weight"], base["model.embed_tokens.weight"]
    )  # frozen


def test_examples_without_targets_are_dropped_not_trained_on(tiny_model):
    from accelerate import Accelerator

    from limo_exp.training.models import load

    model, tok = load(str(tiny_model))
    long_prompt = Example("long", "word " * 400, "\\boxed{1}", "1", "short")
    with pytest.raises(ValueError, match="train.max_length=160"):
        train(model, tok, [long_prompt], TrainConfig(max_steps=1, max_length=160), Accelerator(cpu=True))
    res = train(
        model,
        tok,
        [long_prompt] + _examples(2),
        TrainConfig(max_steps=1, max_length=160, batch_size=2),
        Accelerator(cpu=True),
    )
    assert res.losses[0] == res.losses[0]  # not NaN: the prompt-only example was dropped


def test_accumulation_follows_the_global_batch():
    from limo_exp.training.loop import accumulation_steps, n_optimizer_steps

    cfg = TrainConfig(batch_size=2, global_batch_size=32)
    assert [accumulation_steps(cfg, w) for w in (1, 2, 8, 16)] == [16, 8, 2, 1]
    assert {
        n_optimizer_steps(817, TrainConfig(batch_size=2, global_batch_size=32, epochs=15), w)
        for w in (1, 2, 8)
    } == {383}
    assert accumulation_steps(TrainConfig(batch_size=2, grad_accum=3)) == 3  # no global batch: as given
    with pytest.raises(
        ValueError,
        match=r"global_batch_size=32 is not a multiple of train.batch_size=3 x 2 process\(es\) = 6",
    ):
        accumulation_steps(TrainConfig(batch_size=3, global_batch_size=32), 2)
    with pytest.raises(ValueError, match="train.grad_accum=4 contradicts train.global_batch_size=32"):
        accumulation_steps(TrainConfig(batch_size=2, grad_accum=4, global_batch_size=32), 1)


def test_global_batch_gives_the_same_steps_on_one_or_two_processes(tiny_model, tmp_path):
    """global_batch_size=4, micro-batch 1: 4 micro-batches on one process, 2 on each of two (gloo)."""
    import json
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "ddp.json"
    kw = {"batch_size": 1, "global_batch_size": 4}
    cmd = [*torchrun(2, 29534), str(repo / "tests/ddp_worker.py"), str(tiny_model), str(out), json.dumps(kw)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(out.read_text())
    one, _ = _run(tiny_model, **kw)
    assert (two["world"], two["steps"], one.steps) == (2, 2, 2)
    assert two["losses"] == pytest.approx(one.losses, rel=1e-4)
    assert one.losses == pytest.approx([6.27866, 6.12392], abs=1e-4)  # = one batch of 4 (pinned above)


def test_best_fit_decreasing_packs_rows_within_the_budget():
    from limo_exp.training.batching import best_fit_decreasing

    lengths = [700, 300, 500, 200, 100, 900, 400]
    rows = best_fit_decreasing(lengths, 1000)
    assert rows == [[5, 4], [0, 1], [2, 6], [3]]  # longest first, each into the tightest fit
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 1000 for r in rows)


@pytest.mark.parametrize("budget", [160, 400, 100_000])
def test_token_budget_micro_batches_give_the_pinned_loss(tiny_model, budget):
    """Rows of at most `budget` tokens (one row per sequence ... all sequences in one row): the
    same losses as one padded batch of 4, and no padding computed."""
    res, _ = _run(tiny_model, global_batch_size=4, max_tokens_per_micro_batch=budget, max_length=160)
    ref, _ = _run(tiny_model, batch_size=4, max_length=160)
    assert res.losses == pytest.approx(ref.losses, rel=1e-5)
    assert res.real_tokens == res.seen_tokens < ref.seen_tokens  # padding is gone


def test_an_example_longer_than_the_budget_is_named(tiny_model):
    from limo_exp.training.batching import prepare
    from limo_exp.training.models import load

    _, tok = load(str(tiny_model))
    cfg = TrainConfig(global_batch_size=4, max_tokens_per_micro_batch=64, max_length=512)
    with pytest.raises(
        ValueError, match=r"example \w+ is \d+ tokens long, more than train.max_tokens_per_micro_batch=64"
    ):
        prepare(_examples(), tok, cfg)
    with pytest.raises(ValueError, match="needs train.global_batch_size"):
        from limo_exp.training.loop import accumulation_steps

        accumulation_steps(TrainConfig(max_tokens_per_micro_batch=64))


def test_token_budget_on_two_processes_matches_one(tiny_model, tmp_path):
    """Ranks pack different numbers of rows; gradients are reduced once per step all the same."""
    import json
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "ddp.json"
    kw = {"global_batch_size": 4, "max_tokens_per_micro_batch": 400, "max_length": 160}
    cmd = [*torchrun(2, 29535), str(repo / "tests/ddp_worker.py"), str(tiny_model), str(out), json.dumps(kw)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, _ = _run(tiny_model, **kw)
    assert json.loads(out.read_text())["losses"] == pytest.approx(one.losses, rel=1e-4)


def test_layers_kept_out_of_checkpointing_keep_activations_and_give_the_same_losses(tiny_model):
    """train.checkpoint_skip_layers: the last n layers save their activations for the backward
    pass (no recomputation); the losses do not change; more layers than the model has is refused."""
    from accelerate import Accelerator

    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import skip_checkpointing
    from limo_exp.training.models import load
    from limo_exp.training.sft_data import Tokenized

    batch = {"input_ids": torch.randint(3, 500, (2, 40)), "use_cache": False}
    batch["labels"] = batch["input_ids"].clone()
    saved, flags = {}, {}
    for skip in (0, 1, 2):
        model, _ = load(str(tiny_model))
        model.gradient_checkpointing_enable()
        skip_checkpointing(model, skip)
        model.train()
        sizes: list[int] = []

        def keep(t, sizes=sizes):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            model(**batch)
        saved[skip], flags[skip] = sum(sizes), [layer.gradient_checkpointing for layer in model.model.layers]
    assert flags == {0: [True, True], 1: [True, False], 2: [False, False]}
    assert saved[0] < saved[1] < saved[2]  # each layer kept out saves its activations
    with pytest.raises(ValueError, match="checkpoint_skip_layers=3, but the model has 2 decoder layers"):
        skip_checkpointing(model, 3)

    rows = [Tokenized(list(range(5, 45)), [IGNORE] * 8 + list(range(13, 45)))] * 4
    losses = {}
    for skip in (0, 2):
        torch.manual_seed(0)
        model, tok = load(str(tiny_model))
        cfg = TrainConfig(
            lr=1e-3, max_steps=2, batch_size=2, gradient_checkpointing=True, checkpoint_skip_layers=skip
        )
        losses[skip] = train(model, tok, rows, cfg, Accelerator(cpu=True)).losses
    assert losses[2] == pytest.approx(losses[0], abs=1e-6)


def _toks(lengths):
    from limo_exp.training.sft_data import Tokenized

    return [Tokenized(list(range(3, 3 + n)), [IGNORE] * 2 + list(range(5, 3 + n))) for n in lengths]


def test_the_step_plan_gives_every_rank_the_same_number_of_forwards():
    from limo_exp.training.steps import plan_step

    data = _toks([100, 90, 30, 20, 10, 60, 50, 40])
    cfg = TrainConfig(max_tokens_per_micro_batch=100, global_batch_size=8, max_length=100)
    one = plan_step(data, list(range(8)), cfg, 1)
    assert one.rows == (((0,), (1, 4), (5, 7), (6, 2, 3)),)
    two = plan_step(data, list(range(8)), cfg, 2)
    # rank 0 takes 0, 2, 4, 6 (100; 50+30+10) and rank 1 takes 1, 3, 5, 7 (90; 60+40; 20): rank 0
    # gets an empty forward so both run three
    assert two.rows == (((0,), (6, 2, 4), ()), ((1,), (5, 7), (3,)))
    assert two.n_target == one.n_target == sum(t.n_target for t in data) == 384
    assert two.real == 400
    plain = plan_step(data, list(range(8)), TrainConfig(batch_size=2, global_batch_size=8), 2)
    assert plain.rows == (((0, 2), (4, 6)), ((1, 3), (5, 7)))  # each rank its share, in order


def test_a_step_reads_nothing_back_from_the_device_but_its_loss(tiny_model, monkeypatch):
    """One .item() per optimizer step (the lagged loss read), none per micro-batch; the loss gets
    its target positions from the host (no nonzero on the device)."""
    from limo_exp.training import loss as loss_mod

    calls = {"item": 0, "loss": 0}
    real_item, real_ce = torch.Tensor.item, loss_mod.target_cross_entropy

    def item(self):  # torch's single-tensor AdamW reads its CPU step counter: not a device sync
        import traceback

        if not any("torch/optim" in f.filename for f in traceback.extract_stack()[-4:]):
            calls["item"] += 1
        return real_item(self)

    def ce(*a, target_index=None, target_ids=None, **k):
        assert target_index is not None and target_ids is not None
        calls["loss"] += 1
        return real_ce(*a, target_index=target_index, target_ids=target_ids, **k)

    monkeypatch.setattr(torch.Tensor, "item", item)
    monkeypatch.setattr(loss_mod, "target_cross_entropy", ce)
    res, _ = _run(tiny_model, batch_size=1, grad_accum=2, max_steps=3)
    assert res.steps == 3 and calls == {"item": 3, "loss": 6}


def test_no_host_read_inside_a_step_under_the_check(tiny_model):
    """Every forward, backward and optimizer step under ``syncs.HostReads`` (which sees .item(),
    bool(), .tolist(), torch.equal, .nonzero(), boolean-mask indexing, .cpu(), printing): with
    limo_varlen attention on token-budget rows, not one read; the loss is read a step later, on
    the host. And the check does see a read where one is: sdpa on padded batches reads the mask
    (transformers' ``_ignore_causal_mask_sdpa``), twice per forward of a padded batch."""
    from limo_exp.training import syncs

    kw = {"max_tokens_per_micro_batch": 600, "global_batch_size": 4, "max_steps": 3}
    with syncs.checking("count") as found:
        res, _ = _run(tiny_model, attn="limo_varlen", **kw)
    assert res.steps == 3 and len(found) >= 6  # each step's rows and its optimizer step
    assert [r for step in found for r in step.reads] == []
    with syncs.checking("count") as found:
        _run(tiny_model, attn="sdpa", batch_size=2, grad_accum=2, max_steps=1)
    reads = [r for step in found for r in step.reads]
    assert len(reads) == 4 and all("_ignore_causal_mask_sdpa" in where for _, where in reads)


def test_out_of_memory_names_the_key_the_memory_and_the_kept_state(tiny_model, tmp_path):
    from accelerate import Accelerator

    from limo_exp.training import checkpoints
    from limo_exp.training.models import load
    from limo_exp.training.steps import StepOutOfMemory

    torch.manual_seed(0)
    model, tok = load(str(tiny_model))
    decoder = model.get_decoder()  # the loss installs its own forward on the model, not the decoder
    forward, calls = decoder.forward, {"n": 0}

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2:  # steps 1 and 2 (one row each) run; step 3 asks for too much
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.50 GiB. GPU 0 has ...")
        return forward(*a, **k)

    decoder.forward = failing
    cfg = TrainConfig(
        lr=1e-3,
        max_steps=4,
        max_tokens_per_micro_batch=4096,
        global_batch_size=2,
        checkpoint_every=2,
        instruction="Reason.",
    )
    with pytest.raises(StepOutOfMemory) as err:
        train(model, tok, _examples(), cfg, Accelerator(cpu=True), state_dir=tmp_path / "state", run_key="k")
    msg = str(err.value)
    assert "training step 3" in msg and "3.50 GiB" in msg
    assert "lower train.max_tokens_per_micro_batch=4096" in msg and "gradient_checkpointing=true" in msg
    assert "step 2) is kept" in msg and checkpoints.latest(tmp_path / "state", "k")[1].step == 2


def test_training_with_varlen_attention_gives_the_losses_of_sdpa(tiny_model):
    """limo_varlen (the CPU path: each packed document alone) against sdpa (a block mask from the
    position ids), on padded batches (packed under varlen) and on token-budget rows."""
    from accelerate import Accelerator

    from limo_exp.training.attention import NAME
    from limo_exp.training.models import load

    def run(attn, **kw):
        torch.manual_seed(0)
        model, tok = load(str(tiny_model), attn=attn)
        cfg = TrainConfig(lr=1e-3, max_steps=2, instruction="Reason.", **kw)
        return train(model, tok, _examples(), cfg, Accelerator(cpu=True))

    for kw in ({"batch_size": 4}, {"max_tokens_per_micro_batch": 600, "global_batch_size": 4}):
        a, b = run("sdpa", **kw), run(NAME, **kw)
        assert b.attn_implementation == NAME and a.attn_implementation == "sdpa"
        assert b.losses == pytest.approx(a.losses, rel=1e-5)
        assert b.real_tokens == a.real_tokens and b.seen_tokens == b.real_tokens  # packed: no padding


def test_adamw_built_before_the_weights_moved_is_fused_where_they_are(monkeypatch):
    """Under FSDP the optimizer is built over the CPU weights, which wrapping shards onto the GPU:
    ``fuse_on_device`` turns fused AdamW on for the weights where they are at the first step
    (here the CPU stands for the GPU), and the fused step equals the unfused one."""
    from limo_exp.training import optim

    torch.manual_seed(0)
    weights = [torch.nn.Parameter(torch.randn(8, 4)), torch.nn.Parameter(torch.randn(4))]
    copies = [torch.nn.Parameter(w.detach().clone()) for w in weights]
    monkeypatch.setattr(optim, "FUSED_DEVICES", ())  # built: not on the device yet
    opt = optim.make_optimizer(weights, "adamw", 1e-2, 0.1)
    plain = optim.make_optimizer(copies, "adamw", 1e-2, 0.1)
    assert opt.param_groups[0]["fused"] is None
    monkeypatch.setattr(optim, "FUSED_DEVICES", ("cpu",))  # wrapped: on the device now
    assert optim.fuse_on_device(opt) and opt.param_groups[0]["fused"] is True
    for _ in range(3):
        for w, c in zip(weights, copies):
            w.grad = torch.ones_like(w) * w.detach().sum()
            c.grad = torch.ones_like(c) * c.detach().sum()
        opt.step()
        plain.step()
    assert opt.state[weights[0]]["step"].device.type == "cpu"
    for w, c in zip(weights, copies):
        torch.testing.assert_close(w, c, rtol=1e-6, atol=1e-7)
    assert not optim.fuse_on_device(opt)  # after the first step: left alone
