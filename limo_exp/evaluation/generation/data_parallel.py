"""Data parallel generation: one engine per group of GPUs, each in a process of its own that sees
only its GPUs (``CUDA_VISIBLE_DEVICES``; on a CPU, its share of the cores for vLLM's threads).
vLLM's offline ``LLM`` refuses ``data_parallel_size > 1`` in one process (vllm 0.32: "use the
explicit multi-process data-parallel example"), so the processes are ours.

    engine = DataParallelEngine(partial(VLLMEngine, path, opts), size=4, tensor_parallel=2)
    for group in engine.stream(reqs): ...   # [(index in reqs, Out)] as any engine finishes them

A call's requests are dealt round-robin (request i to engine i mod size: every engine gets its
share of each question's samples, so long and short responses spread evenly), each engine takes
its share in one call, and responses come back as they finish, tagged with their index in the
call. ``calls`` records, per call, how many requests each engine took. A failed or dead engine
stops the call with its error, and the engines are shut down.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import traceback
import weakref
from collections.abc import Callable, Iterator

from limo_exp.evaluation.generation.engines import Gen, Out, in_order

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often a wait for results checks that every engine is alive
STOP_S = 60.0  # how long an engine process may take to stop before it is killed with its children


def deal(n: int, size: int) -> list[list[int]]:
    """Request indices 0..n-1 dealt round-robin over ``size`` engines."""
    return [list(range(w, n, size)) for w in range(size)]


def device_groups(size: int, tensor_parallel: int, cuda: bool) -> list[dict[str, str]]:
    """The environment of each engine's process: its ``tensor_parallel`` GPUs out of those this
    process sees; off CUDA, its share of this process's cores (vLLM's CPU threads)."""
    if cuda:
        seen = os.environ.get("CUDA_VISIBLE_DEVICES")
        import torch

        gpus = seen.split(",") if seen else [str(i) for i in range(torch.cuda.device_count())]
        width = tensor_parallel
        return [{"CUDA_VISIBLE_DEVICES": ",".join(gpus[w * width : (w + 1) * width])} for w in range(size)]
    if "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        return [{} for _ in range(size)]
    cores = sorted(os.sched_getaffinity(0))
    width = max(1, len(cores) // size)
    groups = [cores[w * width : (w + 1) * width] or cores[-1:] for w in range(size)]
    return [{"VLLM_CPU_OMP_THREADS_BIND": f"{g[0]}-{g[-1]}"} for g in groups]


def _serve(factory: Callable, env: dict[str, str], wid: int, inbox, outbox) -> None:
    """An engine's process: build the engine, then answer each job (a list of (index, Gen)) with
    ("out", wid, [(index, Out)]) as responses finish and ("done", wid, n requests)."""
    os.environ.update(env)
    try:
        engine = factory()
        outbox.put(("ready", wid, getattr(engine, "start_seconds", None)))
        while (job := inbox.get()) is not None:
            index, gens = [i for i, _ in job], [g for _, g in job]
            stream = getattr(engine, "stream", None)
            for group in stream(gens) if stream else [list(enumerate(engine.generate(gens)))]:
                outbox.put(("out", wid, [(index[j], o) for j, o in group]))
            outbox.put(("done", wid, len(job)))
        if hasattr(engine, "close"):  # vLLM's own processes stop with it, not at interpreter exit
            engine.close()
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        outbox.put(("error", wid, traceback.format_exc()))


class DataParallelEngine:
    """``size`` engines from ``factory``, each in its own process (see the module's text)."""

    name = "vllm"
    decoding = "vllm"
    requests_per_call = None  # all of a task's requests; each engine takes its share at once

    def __init__(self, factory: Callable, size: int, tensor_parallel: int = 1, cuda: bool | None = None):
        if cuda is None:
            import torch

            cuda = torch.cuda.is_available()
        self.size = size
        self.envs = device_groups(size, tensor_parallel, cuda)
        ctx = mp.get_context("spawn")  # a fresh interpreter: no CUDA state inherited
        self._outbox = ctx.Queue()
        self._inboxes = [ctx.Queue() for _ in range(size)]
        self._procs = [
            ctx.Process(target=_serve, args=(factory, env, w, self._inboxes[w], self._outbox), daemon=False)
            for w, env in enumerate(self.envs)
        ]  # not daemons: vLLM starts processes of its own
        self.calls: list[list[int]] = []  # per call: the requests each engine took
        for p in self._procs:
            p.start()
        # at exit, before multiprocessing waits for its children: ask them to stop
        self._finalizer = weakref.finalize(self, _shutdown, self._inboxes, self._procs)
        ready = 0
        while ready < size:
            kind, wid, _ = self._next()
            ready += kind == "ready"
        log.info("data parallel: %d engines started (%s)", size, "; ".join(map(str, self.envs)))

    def _next(self) -> tuple:
        if not self._finalizer.alive:
            raise RuntimeError("the data-parallel engines were shut down after an earlier failure")
        while True:
            try:
                msg = self._outbox.get(timeout=POLL_S)
            except queue.Empty:
                dead = [(w, p.exitcode) for w, p in enumerate(self._procs) if not p.is_alive()]
                if dead:
                    self.close()
                    w, code = dead[0]
                    raise RuntimeError(
                        f"data-parallel engine {w} ({self.envs[w]}) died (exit code {code})"
                    ) from None
                continue
            if msg[0] == "error":
                self.close()
                raise RuntimeError(f"data-parallel engine {msg[1]} ({self.envs[msg[1]]}) failed:\n{msg[2]}")
            return msg

    def generate(self, reqs: list[Gen]) -> list[Out]:
        return in_order(self.stream(reqs), len(reqs))

    def stream(self, reqs: list[Gen]) -> Iterator[list[tuple[int, Out]]]:
        """``reqs`` dealt over the engines; yields ``[(index in reqs, Out)]`` as they finish."""
        shares = deal(len(reqs), self.size)
        busy = {w for w, share in enumerate(shares) if share}
        self.calls.append([len(s) for s in shares])
        for w in busy:
            self._inboxes[w].put([(i, reqs[i]) for i in shares[w]])
        finished = False
        try:
            while busy:
                kind, wid, payload = self._next()
                if kind == "out":
                    yield payload
                elif kind == "done":
                    busy.discard(wid)
            finished = True
        finally:
            if not finished:  # the caller stopped early: the engines' work is not ours any more
                self.close()

    def close(self) -> None:
        """Stop the engines' processes (a busy one is killed, with its children, after 60 s)."""
        self._finalizer()


def _shutdown(inboxes, procs) -> None:
    """Ask each engine process to stop; one still running after ``STOP_S`` is killed with the
    processes it started (vLLM's engine core and workers: orphans would keep their memory)."""
    for box, p in zip(inboxes, procs):
        if p.is_alive():
            box.put(None)
    for p in procs:
        p.join(timeout=STOP_S)
        if p.is_alive():
            _kill_tree(p)


def _kill_tree(p) -> None:
    try:
        import psutil

        children = psutil.Process(p.pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - no psutil, or the process is gone: the process alone
        children = []
    p.kill()
    for c in children:
        with contextlib.suppress(Exception):  # already gone
            c.kill()
    p.join(timeout=5)
