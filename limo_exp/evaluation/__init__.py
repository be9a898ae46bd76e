"""Evaluation: lm-evaluation-harness on the limo_ tasks, graded by math-verify.

evaluate.py (evaluate, evaluate_to_dir), isolated.py (the same in a clean process after
multi-process training), generation/ (the engines: hf, static decoding, sampling, vLLM),
metrics.py (mean@n, pass@k, maj@k, stderr), grading.py (the one grader), registry.py (tasks, groups, the
benchmarks a suite reads), tasks/ (the lm-eval YAMLs and their pure functions).
"""
