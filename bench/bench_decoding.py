"""The static decoding's step cost against the budget, on CPU with LIMO's shapes but a tiny model:
a Qwen2 with hidden size 64 (12 query heads over 2 KV heads of 16), vocabulary 151,936 and
32,768 positions, fp32, batch 8, one thread.

    python bench/bench_decoding.py [--rounds 7] [--steps 20] [--used 1000]

1. Per-step time of the decoding step (``StaticDecoder``'s own step: the model, the KV store
   writes, ``limo_gqa`` attention) with ``--used`` positions in use, under a 32,768-token budget
   (a KV store of 32,768 columns) and under a 1,024-token budget, in rounds that alternate the
   sides after a warm-up; beside them the same step attending over the whole 32,768 columns (what
   every step cost before the window followed the columns in use). Target: ratio <= 1.3.
2. What re-forming costs for a 30k-token response: rows that go on are never prefilled again;
   the columns are moved when they run out (``KVStore.shift``, timed for the batch at 30k
   columns); a 30k-token row that does need a prefill (a budget-forcing round, the rows after an
   out-of-memory) is prefilled in chunks of 1,024 tokens: its time and how far the peak resident
   memory rose above what the process held before it (its own process, Linux's VmHWM reset).

Writes results/bench/decoding.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
BUDGET, VOCAB, BATCH = 32768, 151936, 8


def tiny_qwen():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=12, num_key_value_heads=2, head_dim=16, max_position_embeddings=BUDGET,
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    return Qwen2ForCausalLM(cfg).eval()


def decoder(model, store_len: int, batch: int = BATCH):
    from limo_exp.evaluation.generation.kv import KVStore
    from limo_exp.evaluation.generation.static import StaticDecoder

    tok = SimpleNamespace(pad_token_id=0)
    dec = StaticDecoder(model, tok, {1}, batch_size=batch, compiled=False)
    dec.store = KVStore(model, batch, store_len)
    for t in dec.store.k + dec.store.v:  # written, as a budget's store is: no untouched zero pages
        t.fill_(0.5)
    return dec


def step_times(rounds: int, steps: int, used: int) -> dict:
    """Median ms per step of each side, rounds alternating after a warm-up round."""
    from limo_exp.evaluation.generation.memory import cache_bucket

    model = tiny_qwen()
    big, small = decoder(model, BUDGET), decoder(model, cache_bucket(used + 1))
    window = cache_bucket(used + 1, BUDGET)
    ids = torch.randint(2, VOCAB, (BATCH, 1))
    start = torch.zeros(BATCH, dtype=torch.long)
    col = torch.tensor([used])
    sides = {
        f"budget_{BUDGET}_window_{window}": big._step(window),
        f"budget_{small.store.length}_window_{window}": small._step(window),
        f"budget_{BUDGET}_window_{BUDGET} (whole budget)": big._step(BUDGET),
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    with torch.no_grad():
        for r in range(rounds + 1):
            for name, step in sides.items():
                started = time.perf_counter()
                for _ in range(steps):
                    step(ids, start, col)
                if r:  # round 0 warms up
                    times[name].append((time.perf_counter() - started) / steps * 1e3)
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    names = list(sides)
    return {
        "used_positions": used,
        "window": window,
        "ms_per_step_median": med,
        "ms_per_step_rounds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "ratio_32k_budget_vs_1k_budget": round(med[names[0]] / med[names[1]], 3),
        "ratio_whole_budget_vs_1k_budget": round(med[names[2]] / med[names[1]], 3),
    }


def shift_seconds(columns: int) -> float:
    """Moving every row of a batch-8 store left by one column at ``columns`` columns in use."""
    from limo_exp.evaluation.generation.kv import KVStore

    store = KVStore(tiny_qwen(), BATCH, BUDGET)
    started = time.perf_counter()
    store.shift(-1, columns)
    return time.perf_counter() - started


def _prefill_child(tokens: int, out) -> None:
    """In a process of its own: one row of ``tokens`` tokens prefilled in chunks into a store of
    32,768 columns; its seconds and the peak resident memory it added (store and model made
    and written before the baseline is read)."""
    from limo_exp.evaluation.generation.static import Row

    torch.set_num_threads(1)
    dec = decoder(tiny_qwen(), BUDGET, batch=1)
    dec.slots, dec.start, dec.used = [Row(list(range(2, tokens + 2)), 1)], [0], tokens
    dec.nxt, dec.seeds, dec.counts = (torch.zeros(1, dtype=torch.long) for _ in range(3))
    dec.pick = {"temperature": 0.0, "top_p": 1.0}
    Path("/proc/self/clear_refs").write_text("5")  # the peak resident size restarts from here
    base = _rss_kib("VmHWM")
    started = time.perf_counter()
    with torch.no_grad():
        dec._prefill(0, dec.slots[0].prompt)
    seconds = time.perf_counter() - started
    added = (_rss_kib("VmHWM") - base) / 1024
    out.put(
        {
            "tokens": tokens,
            "chunk": dec.chunk,
            "seconds": round(seconds, 2),
            "peak_rss_added_mib": round(added, 1),
        }
    )


def _rss_kib(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def prefill_cost(tokens: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_prefill_child, args=(tokens, q))
    p.start()
    result = q.get()
    p.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--used", type=int, default=1000)
    ap.add_argument("--reform-tokens", type=int, default=30000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import transformers

    steps = step_times(args.rounds, args.steps, args.used)
    out = {
        "what": "static decoding step on CPU: tiny Qwen2 (hidden 64, 12/2 heads), vocab 151,936, 32,768 positions, fp32",
        "batch": BATCH,
        "threads": 1,
        "step": steps,
        "target_ratio": 1.3,
        "meets_target": steps["ratio_32k_budget_vs_1k_budget"] <= 1.3,
        "reform": {
            "continuing_rows_prefilled": 0,
            "shift_seconds_batch8_30k_columns": round(shift_seconds(args.reform_tokens), 3),
            "prefill_of_one_30k_row": prefill_cost(args.reform_tokens),
        },
        "commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    dest = ROOT / "results" / "bench" / "decoding.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
