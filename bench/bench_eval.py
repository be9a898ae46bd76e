"""Evaluation speed on CPU, side by side: lm-eval's own hf backend (what limo-exp used before)
against limo-exp's engine (StoredLM, store off), interleaved after a warm-up; then the response
store (a second evaluation of the same suite: no generation, and its share of the first's wall
time); then regrading 1,000 stored responses without a model.

    python bench/bench_eval.py [--rounds 2] [--n 16] [--max-gen-toks 96]

SmolLM2-135M-Instruct (the demo's model, from the PyPI wheel) on the demo's synthetic benchmark,
greedy, batch 1 (the demo's setting on 2 cores). Writes results/bench/eval.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import yaml

from limo_exp.config import EvalConfig, ModelConfig, SyntheticConfig
from limo_exp.evaluation.evaluate import evaluate
from limo_exp.evaluation.regrade import regrade_dir

ROOT = Path(__file__).resolve().parents[1]


def smollm2(cache: Path) -> str:
    from limo_exp.training.models import resolve

    raw = yaml.safe_load((ROOT / "conf/model/smollm2_135m_instruct.yaml").read_text())
    return resolve(ModelConfig.from_dict(raw, "model"), cache)


def lm_eval_hf(model: str, suite: EvalConfig) -> float:
    """The path limo-exp took before its own engine: lm-eval's HFLM with the same tasks and prompts."""
    import lm_eval
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    from limo_exp.evaluation import registry
    from limo_exp.evaluation.generation import backend as be

    meta = {"synthetic_n": suite.synthetic.n, "synthetic_seed": 0, "instruction": suite.instruction}
    tm = TaskManager(include_path=str(registry.TASKS_DIR), include_defaults=False, metadata=meta)
    started = time.perf_counter()
    lm = get_model("hf").create_from_arg_obj(
        {"pretrained": model, "dtype": "float32", "max_length": 8192}, {"batch_size": 1, "device": "cpu"}
    )
    lm_eval.simple_evaluate(
        model=lm,
        tasks=list(suite.tasks),
        task_manager=tm,
        gen_kwargs=be.default_gen_kwargs(suite.max_gen_toks),
        apply_chat_template=True,
        log_samples=True,
    )
    return time.perf_counter() - started


def ours(model: str, suite: EvalConfig, store_dir=None) -> tuple[float, dict]:
    started = time.perf_counter()
    res = evaluate(model, suite, store_dir=store_dir)
    return time.perf_counter() - started, res.metrics


def regrade_bench(tmp: Path, n: int = 1000) -> dict:
    """1,000 sample rows with the answer forms graders trip on, regraded from files."""
    rng = random.Random(0)
    forms = [
        ("\\frac{1}{2}", "0.5"),
        ("27", "27.0"),
        ("1000", "1,000"),
        ("90", "90^\\circ"),
        ("(1, 2]", "(1,2]"),
        ("\\sqrt{2}", "\\sqrt 2"),
        ("10", "10\\%"),
        ("x^2+1", "1+x^2"),
    ]
    rows = []
    for i in range(n):
        gold, pred = forms[i % len(forms)]
        wrong = rng.random() < 0.3
        response = "Reasoning ... so the answer is \\boxed{" + (pred + "1" if wrong else pred) + "}"
        rows.append(
            {
                "id": str(i),
                "sample": 0,
                "gold": [gold],
                "kind": "math",
                "response": response,
                "status": "ok",
                "correct": not wrong,
            }
        )
    folder = tmp / "regrade"
    folder.mkdir()
    (folder / "samples_limo_math500.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    started = time.perf_counter()
    summary = regrade_dir(folder)
    return {
        "responses": n,
        "seconds": time.perf_counter() - started,
        "changed": len(summary["tasks"]["limo_math500"]["changed"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-gen-toks", type=int, default=96)
    args = ap.parse_args()
    cache = ROOT / "outputs" / "cache"
    model = smollm2(cache)
    suite = EvalConfig(
        tasks=["limo_synthetic"],
        max_gen_toks=args.max_gen_toks,
        batch_size=1,
        store="auto",
        synthetic=SyntheticConfig(n=args.n),
    )
    out: dict = {
        "machine": platform.platform(),
        "model": "SmolLM2-135M-Instruct",
        "questions": args.n,
        "max_gen_toks": args.max_gen_toks,
        "batch_size": 1,
    }
    ours(model, EvalConfig(**{**suite.to_dict(), "synthetic": SyntheticConfig(n=2)}))  # warm-up
    old, new = [], []
    for _ in range(args.rounds):  # interleaved: old, new, old, new
        old.append(lm_eval_hf(model, suite))
        new.append(ours(model, suite)[0])
    out["lm_eval_hf_seconds"], out["limo_engine_seconds"] = old, new
    out["engine_speedup"] = min(old) / min(new)
    with tempfile.TemporaryDirectory() as tmp:
        first, m1 = ours(model, suite, store_dir=tmp)
        second, m2 = ours(model, suite, store_dir=tmp)
        out["store"] = {
            "first_seconds": first,
            "second_seconds": second,
            "second_share": second / first,
            "generated": [m1["eval/responses_generated"], m2["eval/responses_generated"]],
            "gen_tokens_per_s": m1.get("eval/limo_synthetic/gen_tokens_per_s"),
        }
        out["regrade"] = regrade_bench(Path(tmp))
    dest = ROOT / "results" / "bench" / "eval.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
