"""The model lm-eval evaluates: one wrapper over the generation engines (hf, vLLM) that serves
stored responses first, generates only what is missing (loading the model on the first miss),
counts tokens, and applies s1's budget forcing when the protocol asks for it.

lm-eval keeps what it is good at (task configs, repeats, filters, metrics); this class is the
``LM`` it calls. The i-th repeat of a request is sample i of the store key. A response that ran
out of tokens carries ``TRUNCATED`` at its end so that the task's grader counts it as no answer
(a truncated chain of thought that happens to contain a box is not an answer).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from lm_eval.api.model import LM

from limo_exp.evaluation.generation.engines import Gen, Out, Timing, requests_per_call, sample_seed
from limo_exp.evaluation.grading import TRUNCATED
from limo_exp.evaluation.store import ResponseStore, Stored, request_key

log = logging.getLogger(__name__)

THINK_END = "</think>"


@dataclass(frozen=True)
class Budget:
    """s1's budget forcing (arXiv 2501.19393): thinking stops at ``think_max`` tokens, where the
    end-of-thinking delimiter and the answer prefix are forced; a model that ends its thinking
    before ``think_min`` tokens gets ``wait`` appended instead, up to ``max_waits`` times."""

    think_max: int
    think_min: int = 0
    max_waits: int = 0
    answer_max: int = 1024
    start_think: str = ""  # text the thinking starts with (s1: "<|im_start|>think\n")
    end_think: str = THINK_END
    answer_prefix: str = "Final Answer:"
    wait: str = "Wait"


def _plain(o: Out) -> Stored:
    return Stored(o.text, o.n_tokens, o.finish)


class StoredLM(LM):
    def __init__(
        self, model_path: str, tokenizer, store: ResponseStore, engine_factory, budget: Budget | None = None
    ):
        super().__init__()
        self.model_path = model_path
        self.tokenizer = tokenizer
        self.store = store
        self._factory = engine_factory
        self._engine = None
        self.budget = budget
        self.timing = Timing()
        self.served: dict[
            tuple[str, int, int], tuple[str, Stored]
        ] = {}  # (task, doc, sample) -> key, response

    # --- what lm-eval asks of a chat model -------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return self.model_path.replace("/", "__")

    def chat_template(self, chat_template=False):
        return self.tokenizer.chat_template if chat_template else None

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
        text = self.tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )
        return text + (self.budget.start_think if self.budget and add_generation_prompt else "")

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("limo-exp tasks are generative (generate_until only)")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("limo-exp tasks are generative (generate_until only)")

    # --- generation ----------------------------------------------------------------------
    @property
    def engine(self):
        if self._engine is None:
            self._engine = self._factory()
        return self._engine

    def settings(self, gen_kwargs: dict) -> dict:
        """What a response depends on besides the model, the prompt and the sample index."""
        sampled = bool(gen_kwargs.get("do_sample")) and float(gen_kwargs.get("temperature") or 0) > 0
        return {
            "max_gen_toks": int(gen_kwargs["max_gen_toks"]),
            "until": sorted(gen_kwargs.get("until") or []),
            "temperature": float(gen_kwargs.get("temperature") or 0) if sampled else 0.0,
            "top_p": float(gen_kwargs.get("top_p", 1.0)) if sampled else 1.0,
            "budget": None if self.budget is None else self.budget.__dict__,
        }

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        plan, seen = [], {}
        for req in requests:  # a request repeated n times (lm-eval's repeats) is samples 0..n-1
            ctx, gen_kwargs = req.args
            slot = (req.task_name, req.doc_id, ctx)
            seen[slot] = seen.get(slot, -1) + 1
            s = self.settings(gen_kwargs)
            plan.append(
                (
                    request_key(self.store.model_fp, ctx, s, seen[slot]),
                    req.task_name,
                    req.doc_id,
                    seen[slot],
                    ctx,
                    s,
                )
            )
        todo: dict[str, list] = {}
        for p in plan:
            if self.store.get(p[0]) is None and p[0] not in {q[0] for q in todo.get(p[1], [])}:
                todo.setdefault(p[1], []).append(p)
        for task, items in todo.items():
            self._generate_task(task, items)
        out = []
        for key, task, doc_id, sample, _, _ in plan:
            s = self.store.records[key]
            self.served[(task, doc_id, sample)] = (key, s)
            out.append(s.response + (TRUNCATED if s.finish == "length" else ""))
        return out

    def _generate_task(self, task: str, items: list) -> None:
        """Generate a task's missing responses, each stored as soon as it is done. An engine takes
        ``engine.requests_per_call`` requests a call (None: all of the task's, as vLLM wants them:
        its scheduler never waits on one response), else 4 x its batch (at least 16); an engine
        with ``stream`` hands responses back as they finish (vLLM), stored per finished group, so
        a crash loses only those in flight."""
        engine = self.engine
        per_call = requests_per_call(engine, len(items))
        stream = getattr(engine, "stream", None) if self.budget is None else None
        self._done = 0
        for i in range(0, len(items), per_call):
            part = items[i : i + per_call]
            clock = self._clock()
            if stream is None:
                done = self._forced(part) if self.budget else self._plain(part)
                self._record(task, part, done, clock(), len(items))
                continue
            gens = [self._gen(k, ctx, s, s["max_gen_toks"]) for k, _, _, _, ctx, s in part]
            for group in stream(gens):  # [(index in gens, Out)] of the requests that just finished
                done = [self._stored(o) for _, o in group]
                self._record(task, [part[j] for j, _ in group], done, clock(), len(items))

    def _clock(self):
        """Seconds since the previous reading, less what compiling the decoding step took
        (paid once per shape: kept out of tokens/s and costs)."""
        last = [time.perf_counter(), self._compile_seconds()]

        def read() -> float:
            now, compiling = time.perf_counter(), self._compile_seconds()
            seconds = now - last[0] - (compiling - last[1])
            last[:] = [now, compiling]
            return seconds

        return read

    def _record(self, task: str, part: list, done: list[Stored], seconds: float, total: int) -> None:
        """Store ``done`` (the responses of ``part``), each with its share of ``seconds`` by tokens."""
        tokens = sum(d.n_tokens for d in done)
        decoding = f"{self.engine.name}/{self.engine.decoding}"
        for d in done:
            d.decoding = decoding
            d.seconds = seconds * d.n_tokens / max(tokens, 1)
        t = self.timing.per_task.setdefault(task, [0.0, 0])
        t[0] += seconds
        t[1] += tokens
        self.timing.seconds += seconds
        self.timing.tokens += tokens
        self.store.add([(p[0], d) for p, d in zip(part, done, strict=True)])
        step = max(1, total // 10)  # a line per tenth of the task, not per response
        before, self._done = self._done, self._done + len(done)
        if self._done // step > before // step or self._done == total:
            log.info(
                "%s: %d/%d responses generated (%.0f tokens/s)",
                task,
                self._done,
                total,
                t[1] / max(t[0], 1e-9),
            )

    def _compile_seconds(self) -> float:
        stats = getattr(self.engine, "stats", None)
        return stats.compile_seconds if stats is not None else 0.0

    def _gen(self, key: str, ctx: str, s: dict, max_new: int, stop=(), round_: int = 0) -> Gen:
        """The request for ``key``; budget forcing's rounds after the first (``round_`` > 0) get
        seeds of their own: an engine's token counter restarts at each request, so the sample's
        seed again would replay the first round's noise."""
        stops = tuple(stop) + tuple(s["until"])
        seed = sample_seed(key if round_ == 0 else f"{key}|round {round_}")
        return Gen(ctx, max_new, stops, s["temperature"], s["top_p"], seed)

    def _plain(self, part: list) -> list[Stored]:
        outs = self.engine.generate([self._gen(k, ctx, s, s["max_gen_toks"]) for k, _, _, _, ctx, s in part])
        return [self._stored(o) for o in outs]

    def _stored(self, o: Out) -> Stored:
        d = _plain(o)
        if THINK_END in o.text or "<think>" in o.text:  # a reasoning model's own thinking
            d.think_tokens = len(
                self.tokenizer(o.text.split(THINK_END)[0], add_special_tokens=False)["input_ids"]
            )
        return d

    def _forced(self, part: list) -> list[Stored]:
        b = self.budget
        state = [{"text": "", "think": 0, "waits": 0, "forced": False} for _ in part]
        active = list(range(len(part)))
        while active:  # thinking rounds: to the budget, or to the model's own end of thinking
            reqs = [
                self._gen(
                    part[i][0],
                    part[i][4] + state[i]["text"],
                    part[i][5],
                    b.think_max - state[i]["think"],
                    (b.end_think,),
                    state[i]["waits"],  # round 0, then one more after each "Wait"
                )
                for i in active
            ]
            again = []
            for i, o in zip(active, self.engine.generate(reqs)):
                st = state[i]
                st["text"] += o.text
                st["think"] += o.n_tokens
                if st["think"] >= b.think_max:
                    st["forced"] = True
                elif st["think"] < b.think_min and st["waits"] < b.max_waits:
                    st["text"] += b.wait  # the model wanted to stop thinking too early
                    st["waits"] += 1
                    again.append(i)
            active = again
        for st in state:
            st["text"] += f"{b.end_think}\n{b.answer_prefix}"
        answers = self.engine.generate(
            [
                self._gen(p[0], p[4] + st["text"], p[5], b.answer_max, (), st["waits"] + 1)
                for p, st in zip(part, state)
            ]
        )
        return [
            Stored(
                st["text"] + o.text,
                st["think"] + o.n_tokens,
                o.finish,
                st["think"],
                st["waits"],
                st["forced"],
            )
            for st, o in zip(state, answers)
        ]
