"""``limo-exp distill``: the ``model`` group's model, as a teacher, writes solutions for a pool.

    limo-exp distill pool=math_train pool.data_dir=../shared/data/pools model=qwen2_5_7b_instruct distill.k=8
    limo-exp distill pool=arithmetic pool.n=64 model=smollm2_135m_instruct distill.mode=rationalize distill.k=2
    limo-exp run pool=distilled pool.file=outputs/distill/<key>/pool.jsonl quality=teacher
    limo-exp run selection=difficult selection.pass_rates=outputs/distill/<key>/pass_rates.jsonl

The key hashes the pool's content, the teacher's weights fingerprint, the distill settings that
change a sample and the seed. Files go to ``<paths.output_root>/distill/<key>/`` (or
``distill.output``); an MLflow run (``limo.kind`` = distill) logs the funnel (``distill/*``), the
teacher's cost (``cost/teacher_tokens``, ``cost/teacher_seconds``) and the files. Every bad input
(k < 1, a template without its placeholders, a pool without gold answers, a teacher that cannot
load) fails before any generation.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from omegaconf import DictConfig

from limo_exp.commands.common import already_done, command, eval_options, parse
from limo_exp.identity import run_key
from limo_exp.typed import ConfigError

SAME_SAMPLES = ("mode", "k", "temperature", "top_p", "max_gen_toks", "instruction", "rationalize_template")
SAME_SAMPLES += ("system_prompt", "max_per_problem", "limit")  # what the key hashes (backend: no)


def load_teacher(model, cache_dir: str) -> tuple[str, object]:
    """Where the teacher is read from, and its tokenizer, after reading its config: a teacher that
    cannot load fails here, before any generation, naming the model."""
    from transformers import AutoConfig

    from limo_exp import training

    base = model.path or model.hub_id or model.name
    try:
        base = training.resolve(model, cache_dir)
        AutoConfig.from_pretrained(base, revision=model.revision, trust_remote_code=model.trust_remote_code)
        return base, training.load_tokenizer(base, model.trust_remote_code, model.revision)
    except (OSError, ValueError) as e:
        raise SystemExit(
            f"limo-exp distill: the teacher model={model.name} ({base}) cannot be loaded: {e}"
        ) from None


def run_distill(cfg: DictConfig) -> dict:
    import torch

    from limo_exp.data import hub, pools
    from limo_exp.data.fingerprints import pool_fingerprint
    from limo_exp.distill import distill, kind_of, write_outputs
    from limo_exp.evaluation.generation import backend as be
    from limo_exp.evaluation.generation.backend import make_engine
    from limo_exp.evaluation.generation.engines import engine_options
    from limo_exp.evaluation.store import model_fingerprint, response_store
    from limo_exp.tracking import run_log
    from limo_exp.tracking.tracker import make_tracker

    spec = parse(cfg)
    c, d = spec.config, spec.config.distill
    pool = pools.load_pool_from_config(c.pool)[: d.limit]
    if not pool:
        raise ConfigError(f"pool={c.pool.name} has no records to distill")
    if not any(r.answer.strip() for r in pool):
        raise ConfigError(
            f"no record of pool={c.pool.name} has a gold answer: a teacher's solution is kept only when "
            "it grades correct against it"
        )
    base, tok = load_teacher(c.model, c.paths.cache_dir)
    fp = model_fingerprint(base, c.model.revision)
    settings = {k: getattr(d, k) for k in SAME_SAMPLES}
    key = run_key({"teacher": fp, "settings": settings, "seed": c.seed}, pool_fingerprint(pool))
    out_dir = Path(d.output or Path(c.paths.output_root) / "distill" / key)
    tracker = make_tracker(c.tracking)
    done = already_done(tracker, key, c.force)
    if done is not None and (out_dir / "pool.jsonl").exists():
        print(f"distill {key} already FINISHED as run {done['run_id']}: {out_dir / 'pool.jsonl'}")
        return done | {"output": str(out_dir)}

    opts = eval_options(c)
    backend = be.choose_backend(d.backend)
    context = be.model_context_length(base, c.model.trust_remote_code, c.model.revision)
    d = replace(d, max_gen_toks=be.fit_generation_budget(d.max_gen_toks, context))
    store = response_store(d.store, opts["store_dir"], fp)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    engine_opts = engine_options(
        d, context=context, dtype=opts["dtype"], seed=c.seed, device=device, revision=c.model.revision,
        trust_remote_code=c.model.trust_remote_code, attn_implementation=opts["attn_implementation"],
        backend=backend, model_path=base,
    )  # fmt: skip

    tags = {"limo.base_model": base, "limo.teacher": c.model.name} | hub.as_tags(hub.loaded())
    with tracker.run(
        f"distill-{c.model.name}-{c.pool.name}-{d.mode}", run_log.run_tags(key, "distill", **tags)
    ):
        tracker.log_params(spec.params(("pool", "model", "distill", "seed")))
        result = distill(
            pool,
            d,
            teacher=c.model.name,
            tokenizer=tok,
            store=store,
            engine_factory=lambda: make_engine(backend, base, engine_opts),
        )
        manifest = {"key": key, "teacher": c.model.name, "teacher_path": base, "teacher_fingerprint": fp,
                    "kind": kind_of(c.model.name, d.mode), "backend": backend, "pool": c.pool.name,
                    "response_store": str(store.path) if store.path else "off", "settings": settings}  # fmt: skip
        files = write_outputs(result, out_dir, manifest)
        par = engine_opts.tensor_parallel_size * engine_opts.data_parallel_size  # as resolved
        devices = par if backend == "vllm" else 1
        tracker.log_metrics({f"distill/{k}": float(v) for k, v in result.funnel.items()})
        tracker.log_metrics(
            {
                "cost/teacher_tokens": float(result.tokens),
                "cost/teacher_seconds": result.seconds,
                "cost/teacher_device_hours": result.seconds * devices / 3600,
                "distill/generated_now": float(result.generated),
            }
        )
        for f in files:
            tracker.log_artifact(f, "distill")
    f = result.funnel
    print(
        f"distill {key}: {f['problems']} problems ({f['no_gold_answer']} without a gold answer), "
        f"{f['generated']} samples ({result.generated} generated now, the rest from the store), "
        f"{f['graded_correct']} graded correct, {f['truncated']} cut at max_gen_toks, {f['kept']} kept, "
        f"{f['problems_solved']} problems with a kept solution; {result.tokens} teacher tokens"
    )
    print(f"  pool       : {out_dir / 'pool.jsonl'}  (pool=distilled pool.file=... quality=teacher)")
    print(f"  pass rates : {out_dir / 'pass_rates.jsonl'}  (selection=difficult selection.pass_rates=...)")
    return {"run_key": key, "run_id": tracker.run_id, "skipped": False, "output": str(out_dir)} | {
        "funnel": result.funnel,
        "generated": result.generated,
    }


main = command(run_distill)
