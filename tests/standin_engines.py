"""Stand-in generation engines for the tests of how requests are fed (stored_lm, data parallel):
no model, responses made from the request, every call recorded. Importable by spawned processes
(tests/ is on their sys.path), so it imports nothing heavy."""

from __future__ import annotations

import os

from limo_exp.evaluation.generation.engines import Gen, Out


def answer(g: Gen) -> Out:
    """A response of ``max_new`` tokens that names its prompt, the process that wrote it and the
    GPUs that process sees."""
    return Out(f"{g.prompt}|{os.getpid()}|{os.environ.get('CUDA_VISIBLE_DEVICES', '')}", g.max_new, "length")


class Batched:
    """An engine without ``stream`` (as hf): one list in, one list out."""

    name, decoding = "standin", "batched"

    def __init__(self, batch_size: int = 4):
        self.batch_size = batch_size
        self.calls: list[int] = []

    def generate(self, reqs: list[Gen]) -> list[Out]:
        self.calls.append(len(reqs))
        return [answer(g) for g in reqs]


class Streaming(Batched):
    """An engine fed as vLLM: all requests a call, responses handed back shortest first, in groups
    of ``group``; ``fail_after`` responses, it fails (a crash mid-call)."""

    decoding = "streaming"
    requests_per_call = None

    def __init__(self, group: int = 2, fail_after: int | None = None):
        super().__init__()
        self.group, self.fail_after = group, fail_after

    def stream(self, reqs: list[Gen]):
        self.calls.append(len(reqs))
        order = sorted(range(len(reqs)), key=lambda i: reqs[i].max_new)
        for k in range(0, len(order), self.group):
            if self.fail_after is not None and k >= self.fail_after:
                raise RuntimeError("the engine died")
            yield [(i, answer(reqs[i])) for i in order[k : k + self.group]]


def streaming(group: int = 2, fail_on: str | None = None) -> Streaming:
    """A factory for a spawned process; ``fail_on``: the prompt that makes it fail."""
    engine = Streaming(group)
    if fail_on is not None:
        real = engine.stream

        def stream(reqs):
            if any(g.prompt == fail_on for g in reqs):
                raise ValueError(f"cannot answer {fail_on}")
            yield from real(reqs)

        engine.stream = stream
    return engine


class Thinking:
    """A budget-forcing stand-in: every thinking round writes 2 tokens (" hm") and stops; every
    answer (a prompt ending in "Final Answer:") is "x". Records each call's requests."""

    batch_size = 4

    def __init__(self):
        self.calls: list[list[Gen]] = []

    def generate(self, reqs: list[Gen]) -> list[Out]:
        self.calls.append(reqs)
        return [
            Out("x", 1, "stop") if r.prompt.endswith("Final Answer:") else Out(" hm", 2, "stop") for r in reqs
        ]


class Hanging(Batched):
    """An engine that starts a process of its own (as vLLM does) and never answers."""

    def __init__(self, pid_file: str):
        import subprocess
        import time

        super().__init__()
        self.child = subprocess.Popen(["sleep", "600"])
        with open(pid_file, "w") as f:
            f.write(str(self.child.pid))
        self.time = time

    def generate(self, reqs):
        self.time.sleep(600)
