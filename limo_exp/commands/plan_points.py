"""One point of ``limo-exp plan``, prepared as ``run`` prepares it (``commands/prepare.py``) and
counted: its training tokens as ``train`` will log them, its evaluation responses and tokens, its
device-hours (``analysis/plan_time.py``, from the counts of ``plan_tokens.py``) and memory
(``analysis/plan_figures.py``); and the sweep's power per benchmark. Nothing loads a model's weights."""

from __future__ import annotations

import statistics

from omegaconf import DictConfig

from limo_exp.config import ConfigError

_SHAPES: dict = {}  # model -> Shape, for the points of one plan
_LOADS: dict = {}  # pools and suites read, for the points of one plan (prepare.identify)


def forget() -> None:
    _SHAPES.clear()
    _LOADS.clear()


def compose(overrides: list[str], hydra_config: bool = False) -> DictConfig:
    """conf/ composed with ``overrides`` (Hydra initialised: by ``make_plan`` or the running app)."""
    from hydra import compose as hydra_compose

    return hydra_compose("config", overrides=overrides, return_hydra_config=hydra_config)


def point_plan(name, overrides, device, gpus, history, tracker, warnings):
    """One point: prepared as run prepares it, then counted and priced."""
    from limo_exp.analysis import plan as P
    from limo_exp.analysis import plan_time as T
    from limo_exp.commands import plan_tokens, prepare
    from limo_exp.commands.common import parse
    from limo_exp.selection.select import NotEnoughRecords

    try:
        spec = parse(compose(overrides))
        prepare.check(spec, gpus)
    except (ConfigError, ValueError) as e:
        warnings.append((name, f"will fail: {e}"))
        return P.PointPlan(name, overrides, None, "fails", error=str(e)), None
    c = spec.config
    out = P.PointPlan(name, overrides, None, "left", model=c.model.name)
    point = None
    try:
        point = prepare.identify(spec, _LOADS)
        out.run_key, out.pool_records = point.key, len(point.pool)
        out.teacher_tokens = sum(r.meta.get("teacher_tokens", 0) for r in point.pool)  # distilled: its cost
        done = tracker.find_finished(point.key) if tracker is not None and not c.force else None
        if done is not None:
            out.status, out.run_id = "finished", done.run_id
        prepare.select(point)
        out.curated_records = len(point.curated.records)
    except NotEnoughRecords as e:
        out.status, out.error = "fails", str(e)
        warnings.append((name, f"will fail: {e}"))
        return out, c
    except (OSError, ConnectionError) as e:  # a hub pool or benchmark not in the local cache
        warnings.append(
            (
                name,
                f"{_first_line(e)}: not readable here; the training tokens and the benchmarks' "
                "sizes say what they were read from instead",
            )
        )
    shape = _shape(c, warnings)
    try:
        out.train = plan_tokens.train(c, point, gpus, shape, _LOADS)
    except ValueError as e:  # an example over the token budget, none left within max_length: run fails so
        out.status, out.error = "fails", str(e)
        warnings.append((name, f"will fail: {e}"))
        return out, c
    from limo_exp.evaluation.generation.parallel import planned_devices

    out.eval = plan_tokens.evaluation(c, point, history, out.train, _LOADS)
    if shape is not None:
        out.train_hours = T.train_hours(
            out.train, shape, c.model.name, device, gpus, history, c.plan.mfu, plan_tokens.offload(c)
        )
        batch = c.eval.max_batch_size
        out.eval_hours = T.eval_hours(
            out.eval,
            shape,
            c.model.name,
            device,
            planned_devices(c.eval.tensor_parallel_size, c.eval.data_parallel_size, gpus),
            batch,
            history,
            c.plan.bandwidth_use,
        )
        out.memory = _memory(c, shape, gpus, device, point, history, out.train)
        if out.memory.fits is False:
            warnings.append(
                (
                    name,
                    f"training needs ~{out.memory.need_gb:,.0f} GB a GPU, more than 90% of {device}'s "
                    f"{out.memory.have_gb:,.0f} GB ({out.memory.detail})",
                )
            )
    return out, c


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _shape(c, warnings):
    """The model's sizes from its config (local files or model.shape), never its weights."""
    from limo_exp.analysis.plan import Shape
    from limo_exp.training.shapes import count_params, model_config

    key = (c.model.name, c.model.source, c.model.path, c.model.hub_id, str(c.model.shape))
    if key not in _SHAPES:
        config, where = model_config(c.model, c.paths.cache_dir)
        _SHAPES[key] = None if config is None else Shape.of(config, count_params(config), where)
        if config is None:
            warnings.append(f"unknown model: {where}; add model.shape (config.json's sizes) to price it")
    return _SHAPES[key]


def _memory(c, shape, gpus, device, point=None, history=None, train=None):
    """Training memory a GPU (``analysis/plan_memory.py``); for a point that does not fit, what
    makes it fit (more nodes, offload, a shorter train.max_length, LoRA), each priced in
    device-hours by the plan's own training time, the cheapest that fits as ``choice``."""
    from limo_exp.analysis import plan_memory as M
    from limo_exp.analysis.plan import Memory

    r, topology = recipe(c, gpus, shape)
    got = M.fit(shape, r, device)
    out = Memory(got.need_gb, got.have_gb, got.fits, got.detail)
    if got.fits is False and train is not None:
        cands = [
            k
            for k in M.candidates(shape, r, gpus, topology, device, _per_node(c))
            if _steps_divide(c, k.gpus)
        ]
        out.choices = M.choose(
            shape, cands, device, lambda cand: _price(cand, c, point, shape, device, history, train, gpus)
        )
        out.choice = M.best(out.choices)
    return out


def memory_check(c, processes: int, device: str | None = None, have_bytes: float | None = None) -> None:
    """``run``'s check before any model loads: on a GPU (``device``, else this machine's), a point
    whose training memory exceeds the card (``have_bytes``, else what torch says it has) is a
    ConfigError naming the need, the card and the choices that fit; ``plan.check_memory=false``
    skips it (try anyway)."""
    from limo_exp.analysis import plan_memory as M

    if not c.plan.check_memory:
        return
    if device is None:
        here = gpu_here()
        if here is None:
            return  # a CPU run: no card to fit
        device, have_bytes = here
    shape = _shape(c, [])
    if shape is None:
        return  # an unknown model: nothing to count with
    r, topology = recipe(c, processes, shape)
    got = M.fit(shape, r, device, have_bytes)
    if got.fits is not False:
        return
    cands = [
        k
        for k in M.candidates(shape, r, processes, topology, device, _per_node(c))
        if _steps_divide(c, k.gpus)
    ]
    fits = [ch for ch in M.choose(shape, cands, device, lambda _: None) if ch.fits]
    ways = (
        "; ".join(f"{ch.name}: {' '.join(ch.overrides)} ({ch.need_gb:,.0f} GB)" for ch in fits)
        or "none found"
    )
    raise ConfigError(
        f"training needs ~{got.need_gb:,.0f} GB a GPU, more than {M.USABLE:.0%} of this {device}'s "
        f"{got.have_gb:,.0f} GB on {processes} process(es) ({got.detail}); it fits with: {ways}; "
        "limo-exp plan prices each; plan.check_memory=false to try anyway"
    )


def _per_node(c) -> int | None:
    """GPUs a node under the point's accelerate topology (its num_processes), None without one."""
    n = (c.accelerate or {}).get("num_processes")
    return int(n) if n else None


def _steps_divide(c, gpus: int) -> bool:
    """Does train.global_batch_size divide over ``gpus`` processes? (A choice that fails run's check is none.)"""
    from limo_exp.training.recipe import accumulation_steps

    try:
        accumulation_steps(c.train, gpus)
    except ValueError:
        return False
    return True


def gpu_here() -> tuple[str, float] | None:
    """This machine's first GPU: its name and the bytes torch says it has; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory


def recipe(c, gpus: int, shape=None):
    """The memory recipe of a point's config on ``gpus`` processes, and its topology (fsdp |
    deepspeed | ddp | single)."""
    from limo_exp.analysis.plan_memory import Recipe, lora_params
    from limo_exp.commands.plan_tokens import offload
    from limo_exp.training.steps import checkpointing

    t, acc = c.train, c.accelerate or {}
    kind = str(acc.get("distributed_type", "")).upper()
    ds = acc.get("deepspeed_config") or {}
    topology = {"FSDP": "fsdp", "DEEPSPEED": "deepspeed", "MULTI_GPU": "ddp"}.get(kind, "single")
    sharded = topology == "fsdp" or (topology == "deepspeed" and int(ds.get("zero_stage", 0) or 0) == 3)
    moved = offload(c) == "cpu"
    params_too = (
        bool((acc.get("fsdp_config") or {}).get("fsdp_offload_params"))
        or ds.get("offload_param_device") == "cpu"
    )
    r = Recipe(
        tokens=t.max_tokens_per_micro_batch or t.batch_size * t.max_length,
        master_bytes=4 if t.master_dtype == "float32" else 2,
        optimizer=t.optimizer,
        lora_params=lora_params(shape, t.lora.r) if (t.lora and shape is not None) else 0,
        sharded_over=gpus if sharded else 1,
        offload=("all" if params_too else "optimizer") if moved else "none",
        checkpointing=checkpointing(t),
        skip_layers=t.checkpoint_skip_layers if checkpointing(t) else 0,
        loss="hf" if t.loss_impl == "hf" else "target_only",
    )
    return r, topology


def _price(cand, c, point, shape, device, history, train, counted_on: int):
    """A candidate's training device-hours, by the plan's own training time: recounted where the
    GPUs or train.max_length change (the step plan's slowest rank), LoRA at 2/3 of the FLOPs
    (no weight gradients)."""
    from dataclasses import replace

    from limo_exp.analysis import plan_time as T
    from limo_exp.commands import plan_tokens

    gpus, t = cand.gpus, train
    cc = c
    if cand.max_length is not None:
        cc = replace(
            c, train=replace(c.train, max_length=cand.max_length, max_tokens_per_micro_batch=cand.max_length)
        )
    if cc is not c or gpus != counted_on:
        try:
            t = plan_tokens.train(cc, point, gpus, shape, _LOADS)
        except ValueError:  # the shorter rows do not hold an example: not priced
            return None
    hours = T.train_hours(t, shape, c.model.name, device, gpus, history, c.plan.mfu, cand.offload).value
    return None if hours is None else hours * (2 / 3 if cand.lora else 1)


def detect(plans, cfgs, opts, history, warnings):
    from limo_exp.analysis import plan_figures as F
    from limo_exp.evaluation import registry

    c = next((c for c in cfgs if c is not None), None)
    left = [p for p in plans if p.eval is not None]
    if c is None or not left:
        return []
    ev = left[0].eval
    sizes, samples, baselines, proto, cost = {}, {}, {}, {}, {}
    for task, responses in ev.per_task.items():
        bench = registry.benchmark_name(task)
        k = c.eval.samples_for(task)
        sizes[bench], samples[bench] = responses // k, k
        proto[bench] = F.protocol(k, c.eval.pass_k, c.eval.temperature)
        if opts.baseline_accuracy is not None:
            baselines[bench] = (opts.baseline_accuracy, "plan.baseline_accuracy")
        elif history.accuracy.get((c.model.name, task)):
            acc = statistics.median(history.accuracy[(c.model.name, task)])
            baselines[bench] = (acc, f"the store: {c.model.name} untrained")
        else:
            baselines[bench] = (opts.assumed_accuracy, "assumed: plan.assumed_accuracy")
        share = responses / max(ev.responses, 1)
        cost[bench] = None if left[0].eval_hours.value is None else left[0].eval_hours.value * share
    hours = [p.hours for p in plans if p.status == "left" and p.hours is not None]
    settings: dict[tuple, set] = {}  # a setting: a point's overrides but its seed
    for p in plans:
        seed, rest = _seed(p.overrides)
        settings.setdefault(rest, set()).add(seed)
    seeds = min(len(s) for s in settings.values())  # the report averages a setting's seeds per problem
    runs = F.Runs(seeds, len(settings), statistics.median(hours) if hours else None)
    return F.detect_all(sizes, samples, baselines, proto, opts, cost, runs)


def _seed(overrides: list[str]) -> tuple[str, tuple[str, ...]]:
    """A point's seed (the last ``seed=``, as Hydra applies them; the config's when none) and its
    other overrides: the setting it is a run of."""
    seeds = [o.split("=", 1)[1] for o in overrides if o.startswith("seed=")]
    return (seeds[-1] if seeds else "config"), tuple(o for o in overrides if not o.startswith("seed="))
