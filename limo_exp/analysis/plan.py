"""``limo-exp plan``'s records: a sweep's points with their token counts, device-hours and memory,
what its comparisons can detect, and its warnings; the one-line summary, plan.md and plan.json.
The command composes and prepares the points (``commands/plan.py``); the figures come from
``analysis/plan_figures.py``. Every figure names its source."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from limo_exp.analysis.plan_memory import choices_markdown


@dataclass
class Figure:
    value: float | None
    source: str

    def text(self, fmt: str = "{:,.1f}") -> str:
        return "unknown" if self.value is None else fmt.format(self.value)


@dataclass
class Shape:
    """What the cost and memory models read from the model's config."""

    params: int
    layers: int
    hidden: int
    kv_dim: int  # key/value heads x head dim
    vocab: int
    intermediate: int
    source: str

    @classmethod
    def of(cls, config, params: int, source: str) -> Shape:
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv = getattr(config, "num_key_value_heads", None) or heads
        inter = getattr(config, "intermediate_size", None) or 4 * config.hidden_size
        return cls(
            params,
            config.num_hidden_layers,
            config.hidden_size,
            kv * head_dim,
            config.vocab_size,
            inter,
            source,
        )


@dataclass
class Train:
    examples: int
    sequences: int
    steps: int
    target_tokens: int
    seen_tokens: int
    real_tokens: int
    attention_tokens2: int  # sum over sequences of length squared: attention's work
    source: str  # how the counts were made (the tokenizer, an estimate, a bound)
    # the slowest rank of each step, summed over the steps (0: not counted, ranks taken as balanced)
    critical_tokens: int = 0
    critical_squares: int = 0
    forwards_per_rank: int = 0
    recompute: float = 0.0  # share of the layers whose forward checkpointing runs again
    mean_target: float = 0.0  # target tokens a sequence, on average


@dataclass
class Eval:
    responses: int  # problems x samples over the suite
    max_tokens: int  # responses x eval.max_gen_toks: the cap
    expected_tokens: Figure  # from earlier runs' mean response length, else the cap
    per_task: dict[str, int] = field(default_factory=dict)  # task -> responses


@dataclass
class Memory:
    need_gb: float
    have_gb: float | None
    fits: bool | None
    detail: str
    choices: list = field(default_factory=list)  # plan_memory.Choice: each way to fit, priced
    choice: str | None = None  # the overrides of the first that fits (plan_memory.best)


@dataclass
class PointPlan:
    name: str
    overrides: list[str]
    run_key: str | None
    status: str  # left | finished | fails
    run_id: str | None = None
    error: str | None = None
    model: str = ""
    pool_records: int | None = None
    curated_records: int | None = None
    teacher_tokens: int = 0  # the generation a distilled pool cost (spent already, counted in the study)
    train: Train | None = None
    eval: Eval | None = None
    train_hours: Figure = field(default_factory=lambda: Figure(None, "not planned"))
    eval_hours: Figure = field(default_factory=lambda: Figure(None, "not planned"))
    memory: Memory | None = None

    @property
    def hours(self) -> float | None:
        if self.status != "left":
            return 0.0
        parts = [self.train_hours.value, self.eval_hours.value]
        return None if any(p is None for p in parts) else sum(parts)


@dataclass
class Detect:
    benchmark: str
    problems: int
    samples: int
    protocol: str
    baseline: float
    baseline_source: str
    mdd: float | None  # minimum detectable gain at the plan's power and alpha; None: none below 100%
    test: str
    fixes: list[str] = field(default_factory=list)
    seeds: int = 1  # runs a setting, averaged per problem as the report does

    def protocol_text(self) -> str:
        return self.protocol + (f", {self.seeds} seeds averaged per problem" if self.seeds > 1 else "")


@dataclass
class Plan:
    study: str
    device: str
    gpus: int
    points: list[PointPlan]
    detect: list[Detect]
    warnings: list[str]
    settings: dict

    @property
    def left(self) -> list[PointPlan]:
        return [p for p in self.points if p.status == "left"]

    @property
    def hours(self) -> float | None:
        parts = [p.hours for p in self.points]
        return None if any(h is None for h in parts) else sum(parts)

    def summary(self) -> str:
        """The one line ``run --multirun`` prints before it starts: the points that will fail (a
        check, or training memory over the device's), the hours with what they rest on, what the
        suite's headline and its weakest benchmark detect."""
        skipped = sum(p.status == "finished" for p in self.points)
        failing = sum(p.status == "fails" for p in self.points)
        tight = [p for p in self.left if p.memory is not None and p.memory.fits is False]
        fail = f"{failing + len(tight)} will fail"
        if tight:
            choices = [c for p in tight if (c := getattr(p.memory, "choice", None))]
            fix = f"; fits with {_words(choices[0])}" if choices else ""
            fail += f": {len(tight)} over {self.device}'s memory as set{fix}"
        basis = self.basis()
        hours = hours_text(self.hours) + f" {self.device}-hours" + (f" ({basis})" if basis else "")
        benches = [d for d in self.detect if d.problems and d.benchmark != "suite mean"]
        suite = next((d for d in self.detect if d.benchmark == "suite mean"), None)
        worst = max(benches, key=lambda d: d.mdd or 2.0, default=None)
        detect = f"; {mdd_text(suite)} on the suite mean" if suite else ""
        if worst:
            detect += (
                f", {mdd_text(worst).removeprefix('detects ')} on {worst.benchmark}"
                if suite
                else f"; {mdd_text(worst)} on {worst.benchmark}"
            )
        return (
            f"plan: {len(self.points)} points ({len(self.left)} to run, {skipped} already FINISHED, "
            f"{fail}), {hours}{detect}"
        )

    def basis(self) -> str:
        """Which of the points' counts are not read from data: bounds, assumptions, estimates."""
        kinds: dict[str, list[str]] = {}
        for p in self.left:
            for what, source in (
                ("training tokens", p.train.source if p.train else ""),
                ("evaluation tokens", p.eval.expected_tokens.source if p.eval else ""),
            ):
                kind = figure_kind(source)
                if kind and what not in kinds.setdefault(kind, []):
                    kinds[kind].append(what)
        return "; ".join(f"{k}: {' and '.join(v)}" for k, v in kinds.items() if v)

    def to_json(self) -> dict:
        out = asdict(self)
        out["hours"], out["summary"] = self.hours, self.summary()
        return out


def figure_kind(source: str) -> str | None:
    """A count's source as the summary marks it: an upper bound (N x max_length, the cap), an
    assumption (a prior), an estimate (characters a token), or None: read from the data or store."""
    if source.startswith(("a bound", "the cap")):
        return "upper bounds"
    if "assumed" in source:
        return "assumed"
    if source.startswith("estimated"):
        return "estimated"
    return None


def hours_text(hours: float | None) -> str:
    """Hours for people: thousands separated, three figures below 100, never an exponent."""
    if hours is None:
        return "unknown"
    if hours >= 100:
        return f"{hours:,.0f}"
    if hours >= 0.01:
        return f"{hours:.3g}"
    return f"{hours:.1g}" if hours >= 0.001 else ("0" if hours == 0 else "< 0.001")


def mdd_text(d) -> str:
    gain = d.mdd if isinstance(d, Detect) else d.difference
    return "no gain detectable" if gain is None else f"detects >= {_points(gain)} points"


def _words(overrides) -> str:
    return overrides if isinstance(overrides, str) else " ".join(overrides)


def _points(gain: float | None) -> str:
    return "none below 100" if gain is None else f"{round(gain * 100, 1):g}"


# ---- writing ---------------------------------------------------------------------------------


def markdown(plan: Plan) -> str:
    lines = [f"# Plan: {plan.study}", "", plan.summary(), ""]
    if plan.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in plan.warnings] + [""]
    lines += [
        f"## Points ({plan.device}, {plan.gpus} {'process(es)' if plan.device == 'cpu' else 'GPU(s)'} a point)",
        "",
        "| point | run key | status | pool -> curated | train tokens (seen) | eval responses "
        "| eval tokens (expected / cap) | device-hours | memory |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for p in plan.points:
        t = f"{p.train.seen_tokens:,}" if p.train else "-"
        e = p.eval
        resp = f"{e.responses:,}" if e else "-"
        toks = f"{e.expected_tokens.text('{:,.0f}')} / {e.max_tokens:,}" if e else "-"
        hours = "-" if p.status != "left" else hours_text(p.hours)
        mem = (
            "-"
            if p.memory is None
            else (
                f"{p.memory.need_gb:,.0f} GB"
                + ("" if p.memory.fits is None else (" fits" if p.memory.fits else " DOES NOT FIT"))
                + (f" (fits with {_words(c)})" if (c := getattr(p.memory, "choice", None)) else "")
            )
        )
        status = p.status + (f" ({p.run_id})" if p.run_id else "")
        curated = "-" if p.pool_records is None else f"{p.pool_records:,} -> {p.curated_records or 0:,}"
        curated += f" (teacher {p.teacher_tokens:,} tokens)" if p.teacher_tokens else ""
        lines.append(
            f"| {p.name} | {p.run_key or '?'} | {status} | {curated} | {t} | {resp} | {toks} | {hours} | {mem} |"
        )
    lines += ["", "Sources:", ""]
    seen = set()
    for p in plan.points:
        for what, text in (
            ("training tokens", p.train.source if p.train else None),
            ("training hours", p.train_hours.source),
            ("evaluation tokens", p.eval.expected_tokens.source if p.eval else None),
            ("evaluation hours", p.eval_hours.source),
            ("memory", p.memory.detail if p.memory else None),
        ):
            if text and (what, text) not in seen and not text.startswith("not planned"):
                seen.add((what, text))
                lines.append(f"- {what}: {text}")
    lines += [""] + choices_markdown(plan.points)
    lines += [
        f"## What a comparison of two settings can detect ({plan.settings['power']:.0%} power, "
        f"alpha {plan.settings['alpha']}, the report's paired test; a setting's seeds averaged per problem)",
        "",
        "| benchmark | problems | protocol | baseline | minimum detectable gain | test |",
        "|---|---:|---|---:|---:|---|",
    ]
    for d in plan.detect:
        mdd = "none below 100%" if d.mdd is None else f"{d.mdd * 100:.1f} points"
        lines.append(
            f"| {d.benchmark} | {d.problems} | {d.protocol_text()} | {d.baseline:.0%} ({d.baseline_source}) "
            f"| {mdd} | {d.test} |"
        )
    for d in plan.detect:
        if d.fixes:
            lines += [
                "",
                (f"**{d.benchmark}** alone" if d.benchmark != "suite mean" else "The **suite mean**")
                + " cannot resolve less than "
                + ("any gain" if d.mdd is None else f"{round(d.mdd * 100, 1):g} points")
                + f" (wanted: {plan.settings['wanted_difference'] * 100:g}). Cheapest fixes:",
                "",
            ]
            lines += [f"- {f}" for f in d.fixes]
    return "\n".join(lines) + "\n"


def write(plan: Plan, folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / "plan.md", folder / "plan.json"
    md.write_text(markdown(plan))
    js.write_text(json.dumps(plan.to_json(), indent=2, default=str) + "\n")
    return [md, js]
